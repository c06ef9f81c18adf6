import Foundation
import Glibc
import Logging
import Synchronization
import SqueezeSupport

/// The content-addressed store under `.squeeze/` (Bazel's CAS plus action cache).
///
/// Layout under `root`:
/// - `objects/ab/<hex>`: file blobs, read-only (0444); `<hex>.x` is the
///   executable (0555) variant that trees with executable files link to.
/// - `trees/ab/<hex>.json`: directory manifests (`TreeManifest`); the directory's
///   digest is the SHA-256 of these bytes.
/// - `trees/ab/<hex>/`: the materialized directory, hard links to the blobs.
/// - `stages/<key>.json`: stage entries (`StageEntry`).
/// - `locks/<key>.lock`: per-key lock files, present while held, naming their
///   holder and refreshed by its heartbeat (`lock(key:)`; no `flock`, which
///   NFS does not keep reliably); `.store.lock` is `flock`ed shared by every
///   open store and exclusively by garbage collection.
/// - `tmp/<pid>-<random>@<host>/`: one staging area per open store, on the
///   same filesystem so everything enters the store by `rename`/`link`.
/// - `statcache.json`: see `StatRecord`.
/// - `resumable/<key>/`: a stage's resumable area (its latest checkpoint),
///   removed once the key's entry is saved (`ContentStore+Resumable.swift`).
///
/// Crash safety: every name appears only once its content is complete and
/// fsynced (blobs, then the manifest, then the materialized tree, the stage
/// entry last), so a process killed at any point leaves a valid store plus
/// garbage in its own `tmp/` subdirectory, which the next `init` removes.
public final class ContentStore: Sendable {
    /// The store's absolute path.
    public let root: String
    let logger: Logger
    /// Heartbeat and stale threshold of the per-key locks.
    public let lockTiming: LockTiming

    let objectsDirectory: String
    let treesDirectory: String
    let stagesDirectory: String
    let locksDirectory: String
    let temporaryRoot: String
    let statCachePath: String
    /// This store's own staging area, `tmp/<pid>-<random>@<host>`.
    let privateTemporary: String

    /// `flock`ed for this store's lifetime: marks `privateTemporary` as live.
    private let temporaryLock: HeldFile
    /// `.store.lock`, held shared for this store's lifetime.
    let storeLock: HeldFile
    private let state: Mutex<State>

    struct State {
        var statCache: [String: StatRecord] = [:]
        /// Paths whose record was set or removed since the last flush.
        var changed: Set<String> = []
        /// Files hashed so far (stat-cache misses), for tests and diagnostics.
        var hashCount = 0
        var temporaryCounter = 0
    }

    /// An input modified less than this before it was hashed gets no stat
    /// record: a second write within the same timestamp tick would leave the
    /// stat unchanged ("racily clean" in git's terms).
    static let racyWindowNanoseconds: Int64 = 100_000_000

    /// A `tmp/` subdirectory without its `.lock` file is only treated as stale
    /// after this long, so one that is being created is never removed.
    static let unlockedTemporaryGraceNanoseconds: Int64 = 60_000_000_000

    /// Opens (creating if needed) the store at `root` and removes staging
    /// directories left by processes that died. `lockTiming` nil means
    /// `LockTiming.fromEnvironment()`.
    public init(root: String, logger: Logger = Logger(label: "squeeze.store"), lockTiming: LockTiming? = nil) throws {
        let root = FileSystem.absolute(root)
        self.root = root
        self.logger = logger
        self.lockTiming = try lockTiming ?? LockTiming.fromEnvironment()
        objectsDirectory = root + "/objects"
        treesDirectory = root + "/trees"
        stagesDirectory = root + "/stages"
        locksDirectory = root + "/locks"
        temporaryRoot = root + "/tmp"
        statCachePath = root + "/statcache.json"
        for directory in [root, objectsDirectory, treesDirectory, stagesDirectory, locksDirectory, temporaryRoot] {
            try FileSystem.makeDirectories(directory)
        }
        let storeLockPath = locksDirectory + "/.store.lock"
        storeLock = HeldFile(descriptor: try FileSystem.open(storeLockPath, O_RDWR | O_CREAT), path: storeLockPath)
        try storeLock.lock(LOCK_SH)
        (privateTemporary, temporaryLock) = try ContentStore.createPrivateTemporary(in: temporaryRoot)

        var records: [String: StatRecord] = [:]
        switch StatCacheFile.load(from: statCachePath) {
        case .missing: break
        case .loaded(let loaded): records = loaded
        case .unusable(let reason):
            logger.warning("ignoring \(statCachePath) (\(reason)); it will be rebuilt")
        }
        state = Mutex(State(statCache: records))
        removeStaleTemporaries()
    }

    deinit {
        do {
            try flush()
        } catch {
            logger.warning("could not write the stat cache: \(error)")
        }
        do {
            try FileSystem.removeTree(privateTemporary)
        } catch {
            logger.warning("could not remove \(privateTemporary): \(error)")
        }
    }

    /// Files hashed because no valid stat record existed.
    var hashCount: Int { state.withLock { $0.hashCount } }

    // MARK: Temporary directories

    /// Creates `tmp/<pid>-<random>@<host>/.lock` and locks it. A cleaner in another
    /// process may remove a directory between its `mkdir` and the `flock`; the
    /// lock is only trusted once the locked file is still the one at its path.
    private static func createPrivateTemporary(in temporaryRoot: String) throws -> (String, HeldFile) {
        var lastError: (any Error)?
        for _ in 0..<20 {
            let path = temporaryRoot + "/\(getpid())-\(FileSystem.randomSuffix())@\(ProcessIdentity.current.fileNameHost)"
            do {
                guard try FileSystem.makeDirectory(path, mode: 0o700) else { continue }
                let lockPath = path + "/.lock"
                let held = HeldFile(descriptor: try FileSystem.open(lockPath, O_RDWR | O_CREAT, mode: 0o600), path: lockPath)
                if try held.tryLock(LOCK_EX), try held.isStillAtPath() { return (path, held) }
            } catch {
                lastError = error
            }
        }
        throw StoreError(.io, path: temporaryRoot, "could not create a private staging directory: \(lastError.map { "\($0)" } ?? "name collisions")")
    }

    /// Removes `tmp/` subdirectories whose `.lock` nobody holds (their process
    /// died). Only this host's (`<pid>-<random>@<host>`, and unnamed ones from
    /// before host names) unless `allHosts`: where `flock` does not reach
    /// across NFS clients, another node's live staging area would look
    /// unlocked. Garbage collection, which needs the store alone, passes `allHosts`.
    func removeStaleTemporaries(allHosts: Bool = false) {
        let names: [String]
        do {
            names = try FileSystem.listDirectory(temporaryRoot)
        } catch {
            logger.warning("could not list \(temporaryRoot): \(error)")
            return
        }
        for name in names {
            let path = temporaryRoot + "/" + name
            guard path != privateTemporary else { continue }
            if !allHosts, let at = name.lastIndex(of: "@"), name[name.index(after: at)...] != ProcessIdentity.current.fileNameHost { continue }
            do {
                guard let status = try FileSystem.lstatIfPresent(path) else { continue }
                guard status.isDirectory else {
                    try FileSystem.removeFile(path)
                    continue
                }
                if let fd = try FileSystem.openIfPresent(path + "/.lock", O_RDWR) {
                    let held = HeldFile(descriptor: fd, path: path + "/.lock")
                    guard try held.tryLock(LOCK_EX) else { continue }
                    try FileSystem.removeTree(path)
                    logger.info("removed staging directory left by a terminated process: \(path)")
                } else if FileSystem.nowNanoseconds() - status.mtimeNanoseconds > ContentStore.unlockedTemporaryGraceNanoseconds {
                    try FileSystem.removeTree(path)
                }
            } catch {
                logger.warning("could not remove stale staging directory \(path): \(error)")
            }
        }
    }

    /// A fresh name (nothing created) inside this store's staging area.
    func temporaryPath(_ label: String) -> String {
        let counter = state.withLock { state in
            state.temporaryCounter += 1
            return state.temporaryCounter
        }
        return privateTemporary + "/\(label)-\(counter)"
    }

    /// A fresh, empty directory in this process's staging area (same
    /// filesystem as the store), e.g. for a stage's outputs before `ingest`.
    /// `name` is only a readable hint; unusual characters become `_`.
    public func makeStagingDirectory(name: String) throws -> String {
        let cleaned = String(name.unicodeScalars.prefix(64).map { scalar -> Character in
            scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_" || scalar == "."
                ? Character(scalar) : "_"
        })
        let hint = cleaned.isEmpty || cleaned.allSatisfy({ $0 == "." }) ? "stage" : cleaned
        while true {
            let path = temporaryPath("stage-" + hint)
            if try FileSystem.makeDirectory(path) { return path }
        }
    }

    // MARK: Stat cache

    /// Hashes the file at `path` and records its stat, unless it was modified
    /// within the racy window and `trustRecent` is false (inputs). Objects in
    /// the store are recorded regardless: nothing writes to them.
    func hashAndRecord(_ path: String, trustRecent: Bool) throws -> (digest: Digest, size: Int64) {
        let start = FileSystem.nowNanoseconds()
        // O_NONBLOCK: opening a FIFO must not hang; it is rejected below.
        let fd = try FileSystem.open(path, O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        let before = try FileSystem.fstat(fd, path: path)
        guard before.isRegularFile else {
            throw StoreError.unsupported(path, "is \(before.kindDescription), not a regular file")
        }
        let (digest, count) = try Hashing.sha256(fileDescriptor: fd, path: path)
        let after = try FileSystem.fstat(fd, path: path)
        guard count == before.size, after.size == before.size, after.mtimeNanoseconds == before.mtimeNanoseconds else {
            throw StoreError(.io, path: path, "the file changed while it was being hashed")
        }
        let record = trustRecent || start - before.mtimeNanoseconds > ContentStore.racyWindowNanoseconds
        state.withLock { state in
            state.hashCount += 1
            if record {
                state.statCache[path] = StatRecord(status: before, digest: digest)
            } else {
                state.statCache[path] = nil
            }
            state.changed.insert(path)
        }
        return (digest, count)
    }

    /// The digest of a regular file: from its stat record when it still
    /// matches, otherwise by hashing.
    func fileDigest(_ path: String, status: FileSystem.Status, trustRecent: Bool) throws -> (digest: Digest, size: Int64) {
        if let record = state.withLock({ $0.statCache[path] }), record.matches(status) {
            return (record.digest, record.size)
        }
        return try hashAndRecord(path, trustRecent: trustRecent)
    }

    func recordVerified(_ path: String, status: FileSystem.Status, digest: Digest) {
        state.withLock { state in
            state.statCache[path] = StatRecord(status: status, digest: digest)
            state.changed.insert(path)
        }
    }

    func forget(_ path: String) {
        state.withLock { state in
            if state.statCache.removeValue(forKey: path) != nil { state.changed.insert(path) }
        }
    }

    /// Writes `statcache.json` atomically. Records another process wrote since
    /// this store loaded it are kept unless this store changed the same path
    /// (last writer wins per path; records validate themselves by stat).
    /// Records of files that no longer exist are dropped. Also attempted,
    /// best effort, when the store is released.
    public func flush() throws {
        let (changed, snapshot) = state.withLock { state in
            (state.changed, state.changed.reduce(into: [String: StatRecord]()) { $0[$1] = state.statCache[$1] })
        }
        guard !changed.isEmpty else { return }
        let lockPath = locksDirectory + "/.statcache.lock"
        let lock = HeldFile(descriptor: try FileSystem.open(lockPath, O_RDWR | O_CREAT), path: lockPath)
        try lock.lock(LOCK_EX)
        var merged: [String: StatRecord] = [:]
        switch StatCacheFile.load(from: statCachePath) {
        case .missing: break
        case .loaded(let records): merged = records
        case .unusable(let reason): logger.warning("replacing unreadable \(statCachePath) (\(reason))")
        }
        for path in changed { merged[path] = snapshot[path] }
        merged = merged.filter { path, _ in (try? FileSystem.lstatIfPresent(path)) != nil }
        try AtomicFile.write(
            try StatCacheFile(entries: merged).encoded(), to: statCachePath, temporaryDirectory: privateTemporary)
        state.withLock { state in
            for path in changed where state.statCache[path] == snapshot[path] { state.changed.remove(path) }
            for (path, record) in merged where !state.changed.contains(path) { state.statCache[path] = record }
        }
    }

    // MARK: Paths

    func blobPath(_ blob: BlobID) -> String { objectsDirectory + "/" + blob.digest.fanOut + "/" + blob.fileName }
    func manifestPath(_ digest: Digest) -> String { treesDirectory + "/" + digest.fanOut + "/" + digest.hex + ".json" }
    func treePath(_ digest: Digest) -> String { treesDirectory + "/" + digest.fanOut + "/" + digest.hex }

    /// Creates `objects/ab` or `trees/ab`, making the new name durable.
    func ensureFanOut(_ directory: String, _ digest: Digest) throws -> String {
        let path = directory + "/" + digest.fanOut
        if try FileSystem.makeDirectory(path) { try FileSystem.fsyncDirectory(directory) }
        return path
    }

    // MARK: Digests of arbitrary paths

    /// The digest a file or directory at `path` has (or would have once
    /// ingested). Symbolic links are followed: this is for inputs. Unchanged
    /// files are not re-hashed (stat cache).
    public func digest(ofPath path: String) throws -> ArtifactRef {
        let path = FileSystem.absolute(path)
        let status = try FileSystem.stat(path)
        if status.isRegularFile {
            let (digest, size) = try fileDigest(path, status: status, trustRecent: false)
            return ArtifactRef(digest: digest, type: .file, size: size)
        }
        guard status.isDirectory else {
            throw StoreError.unsupported(path, "is \(status.kindDescription); only files and directories can be hashed")
        }
        let listing = try DirectoryListing(root: path, followSymlinks: true)
        var entries: [TreeManifest.Entry] = listing.emptyDirectories.map { .init(path: $0, kind: .emptyDirectory) }
        for file in listing.files {
            let (digest, size) = try fileDigest(file.absolutePath, status: file.status, trustRecent: false)
            entries.append(.init(path: file.relativePath, kind: .file(digest: digest, size: size, executable: file.status.isOwnerExecutable)))
        }
        let manifest = TreeManifest(entries: entries)
        return ArtifactRef(digest: manifest.digest, type: .directory, size: manifest.totalSize)
    }

    // MARK: Ingest

    /// Moves a file or directory (normally from a staging directory) into the
    /// store and returns its reference. Files enter by `link` + `unlink` (a
    /// rename that never replaces a valid object); only a source on another
    /// filesystem, or one with other hard links, is copied. Ingesting content
    /// that is already stored just removes the source. Symbolic links, FIFOs,
    /// sockets and devices are rejected with `.unsupported`.
    public func ingest(_ path: String) throws -> ArtifactRef {
        let source = FileSystem.absolute(path)
        let status = try FileSystem.lstat(source)
        try rejectPathsInsideStore(source)
        if status.isRegularFile {
            let (blob, size) = try storeBlob(from: source, status: status, executable: false)
            try FileSystem.removeFile(source)
            return ArtifactRef(digest: blob.digest, type: .file, size: size)
        }
        guard status.isDirectory else {
            throw StoreError.unsupported(
                source, "is \(status.kindDescription); only regular files and directories can be stored")
        }
        let listing = try DirectoryListing(root: source, followSymlinks: false)
        var entries: [TreeManifest.Entry] = listing.emptyDirectories.map { .init(path: $0, kind: .emptyDirectory) }
        for file in listing.files {
            let executable = file.status.isOwnerExecutable
            let (blob, size) = try storeBlob(from: file.absolutePath, status: file.status, executable: executable)
            entries.append(.init(path: file.relativePath, kind: .file(digest: blob.digest, size: size, executable: executable)))
        }
        let manifest = TreeManifest(entries: entries)
        let bytes = manifest.canonicalBytes
        let digest = Hashing.sha256(bytes)
        try writeManifest(digest, bytes)
        _ = try materialize(digest, manifest)
        try FileSystem.removeTree(source)
        return ArtifactRef(digest: digest, type: .directory, size: manifest.totalSize)
    }

    /// Ingest moves its source, so the source must not be part of the store
    /// (a stored object, an entry, a lock, a staging area root) nor contain it.
    private func rejectPathsInsideStore(_ source: String) throws {
        let parent = FileSystem.parent(of: source)
        let name = String(source[source.index(after: source.lastIndex(of: "/") ?? source.startIndex)...])
        let resolvedSource = (realpathString(parent) ?? parent) + "/" + name
        let resolvedRoot = realpathString(root) ?? root
        let resolvedPrivate = realpathString(privateTemporary) ?? privateTemporary
        func isWithin(_ directory: String) -> Bool { resolvedSource == directory || resolvedSource.hasPrefix(directory + "/") }
        let forbidden = ["/objects", "/trees", "/stages", "/locks"].contains { isWithin(resolvedRoot + $0) }
            || resolvedSource == resolvedRoot + "/tmp" || resolvedSource == resolvedPrivate
            || resolvedSource == resolvedRoot || resolvedRoot.hasPrefix(resolvedSource == "/" ? "/" : resolvedSource + "/")
        if forbidden {
            throw StoreError.unsupported(source, "is part of the store at \(root) or contains it; only staged outputs can be ingested")
        }
    }

    private func realpathString(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Makes the content of `source` a blob (`executable` selects the 0555
    /// variant) and returns it. `source` is left in place for the caller to
    /// remove; when it could be linked it now shares the object's inode.
    private func storeBlob(from source: String, status: FileSystem.Status, executable: Bool) throws -> (BlobID, Int64) {
        // A file with other hard links may be written through them later; store a copy instead.
        var candidate = status.linkCount > 1 ? try copyToTemporary(source) : source
        var copies: [String] = candidate == source ? [] : [candidate]
        defer { for copy in copies { try? FileSystem.removeFile(copy) } }
        while true {
            try FileSystem.chmod(candidate, executable ? 0o555 : 0o444)
            let fd = try FileSystem.open(candidate, O_RDONLY)
            defer { close(fd) }
            let opened = try FileSystem.fstat(fd, path: candidate)
            let digest: Digest
            let size: Int64
            if let known = KnownDigests.digest(path: candidate, status: opened) {
                // Written (and hashed) by this process, unchanged since: a model file a stage just wrote.
                (digest, size) = (known, opened.size)
            } else {
                (digest, size) = try Hashing.sha256(fileDescriptor: fd, path: candidate)
                state.withLock { $0.hashCount += 1 }
            }
            try FileSystem.fsync(fd, path: candidate)
            let candidateStatus = try FileSystem.fstat(fd, path: candidate)
            let blob = BlobID(digest: digest, executable: executable)
            if try placeBlob(candidate, blob: blob, status: candidateStatus) { return (blob, size) }
            // Another filesystem: copy into the staging area, which is on the store's.
            guard candidate == source else {
                throw StoreError(.io, path: candidate, "cannot link staged copy into \(objectsDirectory)")
            }
            candidate = try copyToTemporary(source)
            copies.append(candidate)
        }
    }

    /// Links `candidate` (content `blob`, fsynced) into `objects/`. Returns
    /// false when it lives on another filesystem. An existing valid object is
    /// kept; a corrupt one is replaced atomically.
    func placeBlob(_ candidate: String, blob: BlobID, status: FileSystem.Status) throws -> Bool {
        let fanOut = try ensureFanOut(objectsDirectory, blob.digest)
        let objectPath = blobPath(blob)
        switch try FileSystem.link(candidate, to: objectPath) {
        case .linked:
            try FileSystem.fsyncDirectory(fanOut)
            recordVerified(objectPath, status: status, digest: blob.digest)
            return true
        case .crossDevice:
            return false
        case .tooManyLinks:
            throw StoreError(.io, path: candidate, "has too many hard links to be stored")
        case .exists:
            if try isValidBlob(at: objectPath, blob: blob) { return true }
            logger.warning("object \(objectPath) was corrupt; replacing it with a good copy")
            let temporary = temporaryPath("blob")
            switch try FileSystem.link(candidate, to: temporary) {
            case .linked: break
            case .crossDevice: return false
            case .exists, .tooManyLinks: throw StoreError(.io, path: candidate, "could not link into \(privateTemporary)")
            }
            try FileSystem.rename(temporary, to: objectPath)
            try FileSystem.fsyncDirectory(fanOut)
            recordVerified(objectPath, status: status, digest: blob.digest)
            return true
        }
    }

    /// Copies a file into the staging area (a fresh inode on the store's filesystem).
    private func copyToTemporary(_ source: String) throws -> String {
        let destination = temporaryPath("copy")
        try FileSystem.copyFile(source, to: destination)
        return destination
    }

    /// Whether the object at `path` holds `blob`'s content with its mode:
    /// trusted from the stat record while it matches, otherwise re-hashed.
    /// A wrong mode (someone ran chmod) is restored with a warning.
    func isValidBlob(at path: String, blob: BlobID) throws -> Bool {
        guard let status = try FileSystem.lstatIfPresent(path), status.isRegularFile else { return false }
        let verified: Bool
        if let record = state.withLock({ $0.statCache[path] }), record.matches(status) {
            verified = record.digest == blob.digest
        } else {
            verified = try hashAndRecord(path, trustRecent: true).digest == blob.digest
        }
        let mode: UInt32 = blob.executable ? 0o555 : 0o444
        if verified, status.permissions != mode {
            logger.warning("restoring mode \(String(mode, radix: 8)) of \(path)")
            try FileSystem.chmod(path, mode_t(mode))
        }
        return verified
    }

    // MARK: Trees

    /// Writes `trees/ab/<hex>.json` unless an intact copy is there.
    func writeManifest(_ digest: Digest, _ bytes: [UInt8]) throws {
        _ = try ensureFanOut(treesDirectory, digest)
        let path = manifestPath(digest)
        if let existing = try FileSystem.readFileIfPresent(path) {
            if existing == bytes { return }
            logger.warning("manifest \(path) was corrupt; rewriting it")
        }
        try AtomicFile.write(bytes, to: path, temporaryDirectory: privateTemporary, mode: 0o444)
    }

    /// Returns `trees/ab/<hex>/`, building it from the blobs (which must be
    /// verified) when it is missing or does not match the manifest. The tree
    /// is built in the staging area and renamed into place, so an incomplete
    /// tree is never visible under its final name.
    func materialize(_ digest: Digest, _ manifest: TreeManifest) throws -> String {
        let final = treePath(digest)
        if try FileSystem.lstatIfPresent(final) != nil {
            if try materializedTreeMatches(final, manifest, forceHash: false) { return final }
            logger.warning("materialized tree \(final) does not match its manifest; rebuilding it")
            try discard(final)
        }
        let fanOut = try ensureFanOut(treesDirectory, digest)
        let build = temporaryPath("tree")
        try FileSystem.makeDirectory(build)
        var directories: [String] = [build]
        var created: Set<[UInt8]> = []
        for entry in manifest.entries {
            let components = entry.path.split(separator: "/")
            var relative = ""
            let parentCount = entry.kind == .emptyDirectory ? components.count : components.count - 1
            for component in components.prefix(parentCount) {
                relative += relative.isEmpty ? String(component) : "/" + component
                if created.insert(Array(relative.utf8)).inserted {
                    try FileSystem.makeDirectory(build + "/" + relative)
                    directories.append(build + "/" + relative)
                }
            }
            guard case .file(let blobDigest, _, let executable) = entry.kind else { continue }
            let object = blobPath(BlobID(digest: blobDigest, executable: executable))
            let destination = build + "/" + entry.path
            switch try FileSystem.link(object, to: destination) {
            case .linked:
                break
            case .tooManyLinks:
                // ext4 caps an inode at 65000 links; a copy is checked by content instead.
                let copy = try copyToTemporary(object)
                try FileSystem.chmod(copy, executable ? 0o555 : 0o444)
                try FileSystem.fsyncFile(copy)
                try FileSystem.rename(copy, to: destination)
            case .exists, .crossDevice:
                throw StoreError(.io, path: destination, "could not link \(object) into the tree being built")
            }
        }
        for directory in directories.reversed() {
            try FileSystem.fsyncDirectory(directory)
            if directory != build { try FileSystem.chmod(directory, 0o555) }
        }
        for _ in 0..<2 {
            if try FileSystem.renameDirectory(build, to: final) {
                try FileSystem.chmod(final, 0o555)
                try FileSystem.fsyncDirectory(fanOut)
                return final
            }
            // Another process materialized it meanwhile.
            if try materializedTreeMatches(final, manifest, forceHash: false) {
                try FileSystem.removeTree(build)
                return final
            }
            try discard(final)
        }
        throw StoreError(.io, path: final, "could not move the materialized tree into place")
    }

    /// Whether the directory at `path` holds exactly the manifest's files and
    /// empty directories, each file a hard link to its (separately verified)
    /// blob or, failing that, with the right content and executable bit.
    func materializedTreeMatches(_ path: String, _ manifest: TreeManifest, forceHash: Bool) throws -> Bool {
        let listing: DirectoryListing
        do {
            listing = try DirectoryListing(root: path, followSymlinks: false)
        } catch let error as StoreError where error.kind == .unsupported {
            return false
        }
        var expectedFiles: [[UInt8]: BlobID] = [:]
        var expectedDirectories: Set<[UInt8]> = []
        for entry in manifest.entries {
            switch entry.kind {
            case .file(let digest, _, let executable): expectedFiles[Array(entry.path.utf8)] = BlobID(digest: digest, executable: executable)
            case .emptyDirectory: expectedDirectories.insert(Array(entry.path.utf8))
            }
        }
        guard listing.files.count == expectedFiles.count,
              Set(listing.emptyDirectories.map { Array($0.utf8) }) == expectedDirectories
        else { return false }
        for file in listing.files {
            guard let blob = expectedFiles[Array(file.relativePath.utf8)] else { return false }
            if let object = try FileSystem.lstatIfPresent(blobPath(blob)), object.isSameFile(as: file.status) { continue }
            guard file.status.isOwnerExecutable == blob.executable else { return false }
            let digest = forceHash
                ? try hashAndRecord(file.absolutePath, trustRecent: true).digest
                : try fileDigest(file.absolutePath, status: file.status, trustRecent: true).digest
            guard digest == blob.digest else { return false }
        }
        return true
    }

    /// Reads `trees/ab/<hex>.json`, checks its digest and parses it. A bad
    /// manifest is removed together with its tree, and `.corrupt` thrown.
    func loadManifest(_ digest: Digest) throws -> TreeManifest {
        let path = manifestPath(digest)
        guard let bytes = try FileSystem.readFileIfPresent(path) else {
            throw StoreError.missing(path, "directory \(digest) is not in the store")
        }
        do {
            guard Hashing.sha256(bytes) == digest else {
                throw StoreError.corrupt(path, "manifest content does not match its digest")
            }
            return try TreeManifest.parse(bytes, origin: path)
        } catch let error as StoreError where error.kind == .corrupt {
            logger.warning("\(error); removing it")
            try removeTreeArtifact(digest)
            throw error
        }
    }

    /// Removes a tree: the materialized directory first (a manifest without
    /// one is valid, the reverse is not), then the manifest.
    func removeTreeArtifact(_ digest: Digest) throws {
        try discard(treePath(digest))
        try FileSystem.removeFile(manifestPath(digest))
        try FileSystem.fsyncDirectory(treesDirectory + "/" + digest.fanOut)
    }

    func removeObject(_ path: String) throws {
        if try FileSystem.lstatIfPresent(path)?.isDirectory == true {
            try discard(path)
        } else {
            try FileSystem.removeFile(path)
        }
        forget(path)
        try FileSystem.fsyncDirectory(FileSystem.parent(of: path))
    }

    /// Moves `path` out of sight (into the staging area) in one step, then
    /// deletes it, so no half-deleted tree is ever visible.
    func discard(_ path: String) throws {
        guard let status = try FileSystem.lstatIfPresent(path) else { return }
        let aside = temporaryPath("discard")
        if status.isDirectory, status.permissions & 0o200 == 0 {
            // Moving a directory to another parent rewrites its `..` entry.
            try FileSystem.chmod(path, mode_t(status.permissions | 0o700))
        }
        try FileSystem.rename(path, to: aside)
        try FileSystem.fsyncDirectory(FileSystem.parent(of: path))
        try FileSystem.removeTree(aside)
    }

    // MARK: Reading

    /// A readable path for a stored artifact: the blob, or the materialized
    /// directory (built on first use). Content not verified before (or whose
    /// stat changed since) is re-hashed first; on a mismatch the bad object or
    /// tree is removed, a warning logged and `.corrupt` thrown, which callers
    /// treat as a cache miss. Absent artifacts throw `.missing`.
    public func path(for ref: ArtifactRef) throws -> String {
        switch ref.type {
        case .file:
            let blob = BlobID(digest: ref.digest, executable: false)
            let object = blobPath(blob)
            guard let status = try FileSystem.lstatIfPresent(object) else {
                throw StoreError.missing(object, "file \(ref.digest) is not in the store")
            }
            if status.isRegularFile, status.size != ref.size {
                throw StoreError.corrupt(object, "object has \(status.size) bytes but the reference says \(ref.size)")
            }
            guard try isValidBlob(at: object, blob: blob) else {
                logger.warning("\(object) does not match its digest; removing it")
                try removeObject(object)
                throw StoreError.corrupt(object, "content does not match digest \(ref.digest)")
            }
            return object
        case .directory:
            let manifest = try loadManifest(ref.digest)
            guard manifest.totalSize == ref.size else {
                throw StoreError.corrupt(manifestPath(ref.digest), "directory has \(manifest.totalSize) bytes but the reference says \(ref.size)")
            }
            for blob in manifest.blobs.sorted(by: { $0.fileName < $1.fileName }) {
                let object = blobPath(blob)
                guard try FileSystem.lstatIfPresent(object) != nil else {
                    logger.warning("tree \(ref.digest) needs missing object \(object); removing the tree")
                    try removeTreeArtifact(ref.digest)
                    throw StoreError.corrupt(object, "object of directory \(ref.digest) is missing")
                }
                guard try isValidBlob(at: object, blob: blob) else {
                    logger.warning("\(object) does not match its digest; removing it and tree \(ref.digest)")
                    try removeObject(object)
                    try removeTreeArtifact(ref.digest)
                    throw StoreError.corrupt(object, "content does not match digest \(blob.digest)")
                }
            }
            return try materialize(ref.digest, manifest)
        }
    }

    /// Whether the artifact is stored (files: the blob with the right size;
    /// directories: the manifest and every blob it needs). Nothing is hashed.
    public func contains(_ ref: ArtifactRef) -> Bool {
        switch ref.type {
        case .file:
            guard let status = try? FileSystem.lstatIfPresent(blobPath(BlobID(digest: ref.digest, executable: false))) else { return false }
            return status.isRegularFile && status.size == ref.size
        case .directory:
            guard let bytes = try? FileSystem.readFileIfPresent(manifestPath(ref.digest)),
                  let manifest = try? TreeManifest.parse(bytes, origin: manifestPath(ref.digest)),
                  manifest.totalSize == ref.size
            else { return false }
            return manifest.blobs.allSatisfy { blob in
                (try? FileSystem.lstatIfPresent(blobPath(blob)))??.isRegularFile == true
            }
        }
    }
}
