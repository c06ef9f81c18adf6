import Foundation
import Glibc
import SqueezeSupport

extension ContentStore {
    /// Lists a store directory for maintenance, turning failures into a problem line.
    private func names(in directory: String, problems: inout [String]) -> [String] {
        do {
            return try FileSystem.listDirectory(directory).sorted()
        } catch {
            problems.append("\(directory): cannot be listed: \(error)")
            return []
        }
    }

    /// Re-hashes every blob and tree (ignoring stat records), checks every
    /// stage entry points at present, valid artifacts of the recorded size,
    /// and reports each problem as "path: what is wrong", and lists stale lock
    /// files apart. With `repair`, bad objects, trees and entries (and entries
    /// depending on them) and stale lock files are removed; otherwise nothing
    /// is changed.
    public func verifyAll(repair: Bool = false) -> VerifyReport {
        var report = VerifyReport()
        var problems: [String] = []
        func problem(_ path: String, _ message: String, fix: () throws -> Void) {
            problems.append("\(path): \(message)")
            guard repair else { return }
            do {
                try fix()
            } catch {
                problems.append("\(path): repair failed: \(error)")
            }
        }

        // Blobs.
        var validBlobs: [BlobID: Int64] = [:]
        for fanOut in names(in: objectsDirectory, problems: &problems) {
            let fanOutPath = objectsDirectory + "/" + fanOut
            guard (try? FileSystem.lstat(fanOutPath))?.isDirectory == true else {
                problem(fanOutPath, "unexpected file in objects/") { try discard(fanOutPath) }
                continue
            }
            for name in names(in: fanOutPath, problems: &problems) {
                let path = fanOutPath + "/" + name
                guard let blob = BlobID(fileName: name), blob.digest.fanOut == fanOut else {
                    problem(path, "unexpected file in objects/") { try discard(path) }
                    continue
                }
                report.checkedObjects += 1
                guard (try? FileSystem.lstat(path))?.isRegularFile == true else {
                    problem(path, "is not a regular file") { try removeObject(path) }
                    continue
                }
                do {
                    let (digest, size) = try hashAndRecord(path, trustRecent: true)
                    guard digest == blob.digest else {
                        problem(path, "content hashes to \(digest), not \(blob.digest)") { try removeObject(path) }
                        continue
                    }
                    let mode: UInt32 = blob.executable ? 0o555 : 0o444
                    let permissions = try FileSystem.lstat(path).permissions
                    if permissions != mode {
                        problem(path, "mode is \(String(permissions, radix: 8)), expected \(String(mode, radix: 8))") {
                            try FileSystem.chmod(path, mode_t(mode))
                        }
                    }
                    validBlobs[blob] = size
                } catch {
                    problem(path, "cannot be verified: \(error)") { try removeObject(path) }
                }
            }
        }

        // Trees: manifests, then their materialized directories.
        var validTrees: [Digest: Int64] = [:]
        for fanOut in names(in: treesDirectory, problems: &problems) {
            let fanOutPath = treesDirectory + "/" + fanOut
            guard (try? FileSystem.lstat(fanOutPath))?.isDirectory == true else {
                problem(fanOutPath, "unexpected file in trees/") { try discard(fanOutPath) }
                continue
            }
            var manifests: [Digest] = []
            var materialized: Set<Digest> = []
            for name in names(in: fanOutPath, problems: &problems) {
                let path = fanOutPath + "/" + name
                let isDirectory = (try? FileSystem.lstat(path))?.isDirectory == true
                if name.hasSuffix(".json"), !isDirectory, let digest = Digest(hex: String(name.dropLast(5))), digest.fanOut == fanOut {
                    manifests.append(digest)
                } else if isDirectory, let digest = Digest(hex: name), digest.fanOut == fanOut {
                    materialized.insert(digest)
                } else {
                    problem(path, "unexpected file in trees/") { try discard(path) }
                }
            }
            for digest in manifests {
                report.checkedTrees += 1
                let path = manifestPath(digest)
                let manifest: TreeManifest
                do {
                    let bytes = try FileSystem.readFile(path)
                    guard Hashing.sha256(bytes) == digest else {
                        problem(path, "manifest content hashes to \(Hashing.sha256(bytes)), not \(digest)") { try removeTreeArtifact(digest) }
                        continue
                    }
                    manifest = try TreeManifest.parse(bytes, origin: path)
                } catch {
                    problem(path, "invalid manifest: \(error)") { try removeTreeArtifact(digest) }
                    continue
                }
                var broken = false
                for entry in manifest.entries {
                    guard case .file(let blobDigest, let size, let executable) = entry.kind else { continue }
                    let blob = BlobID(digest: blobDigest, executable: executable)
                    guard validBlobs[blob] == size else {
                        problem(path, "`\(entry.path)` needs object \(blob.fileName) of \(size) bytes, which is missing or invalid") {
                            try removeTreeArtifact(digest)
                        }
                        broken = true
                        break
                    }
                }
                if broken { continue }
                if materialized.contains(digest) {
                    let treePath = treePath(digest)
                    let matches = (try? materializedTreeMatches(treePath, manifest, forceHash: true)) ?? false
                    if !matches {
                        problem(treePath, "materialized directory does not match its manifest") { try discard(treePath) }
                    }
                }
                validTrees[digest] = manifest.totalSize
            }
            for digest in materialized.subtracting(manifests).sorted() {
                let treePath = treePath(digest)
                problem(treePath, "materialized directory has no manifest") { try discard(treePath) }
            }
        }

        // Stage entries.
        for name in names(in: stagesDirectory, problems: &problems) {
            let path = stagesDirectory + "/" + name
            let key = name.hasSuffix(".json") ? String(name.dropLast(5)) : ""
            guard StageEntry.isValidKey(key) else {
                problem(path, "unexpected file in stages/") { try discard(path) }
                continue
            }
            report.checkedEntries += 1
            let entry: StageEntry
            do {
                guard let read = try readEntry(key) else { continue }
                entry = read
            } catch {
                problem(path, "\(error)") { try removeEntry(forKey: key) }
                continue
            }
            for (output, ref) in entry.outputs.sorted(by: { $0.key < $1.key }) {
                let valid: Bool
                switch ref.type {
                case .file: valid = validBlobs[BlobID(digest: ref.digest, executable: false)] == ref.size
                case .directory: valid = validTrees[ref.digest] == ref.size
                }
                if !valid {
                    problem(path, "output `\(output)` (\(ref.type.rawValue) \(ref.digest), \(ref.size) bytes) is missing or invalid") {
                        try removeEntry(forKey: key)
                    }
                    break
                }
            }
        }
        do {
            report.staleLocks = try staleLockFiles(remove: repair)
        } catch {
            problems.append("\(locksDirectory): cannot check the lock files: \(error)")
        }
        report.problems = problems
        return report
    }

    /// Deletes stage entries whose key is not in `keepingKeys`, then every
    /// tree and blob no kept entry references (including leftovers of
    /// interrupted runs). Needs the store alone: throws `.busy` while another
    /// `ContentStore` (in any process) is open on it.
    ///
    /// Order keeps the store valid if interrupted: entries, then materialized
    /// trees, then manifests, then blobs. Stale lock files go last, then
    /// the orphaned resumable areas (`removeOrphanedResumableAreas`: the key
    /// has an entry, or nothing was written there for `resumableMaximumAge` seconds).
    public func collectGarbage(keepingKeys: Set<String>, resumableMaximumAge: Double = 7 * 86_400) throws -> GCReport {
        guard try storeLock.tryLock(LOCK_EX) else {
            // Linux drops the shared lock when a conversion fails; take it back.
            try storeLock.lock(LOCK_SH)
            throw StoreError(.busy, path: root, "another squeeze process is using the store; garbage collection needs it alone")
        }
        defer { try? storeLock.lock(LOCK_SH) }
        var report = GCReport()

        // Entries.
        var keptBlobs: Set<BlobID> = []
        var keptTrees: Set<Digest> = []
        for name in try FileSystem.listDirectory(stagesDirectory).sorted() {
            let key = name.hasSuffix(".json") ? String(name.dropLast(5)) : ""
            if StageEntry.isValidKey(key), keepingKeys.contains(key) {
                report.keptEntries += 1
                guard let entry = entry(forKey: key) else { continue }
                for ref in entry.outputs.values {
                    switch ref.type {
                    case .file: keptBlobs.insert(BlobID(digest: ref.digest, executable: false))
                    case .directory: keptTrees.insert(ref.digest)
                    }
                }
            } else {
                try FileSystem.removeTree(stagesDirectory + "/" + name)
                report.removedEntries += 1
            }
        }
        try FileSystem.fsyncDirectory(stagesDirectory)
        for digest in keptTrees {
            guard let bytes = try FileSystem.readFileIfPresent(manifestPath(digest)),
                  let manifest = try? TreeManifest.parse(bytes, origin: manifestPath(digest))
            else { continue }
            keptBlobs.formUnion(manifest.blobs)
        }

        // Trees: materialized directories first, then manifests.
        for fanOut in try FileSystem.listDirectory(treesDirectory) {
            let fanOutPath = treesDirectory + "/" + fanOut
            guard try FileSystem.lstat(fanOutPath).isDirectory else {
                try FileSystem.removeFile(fanOutPath)
                continue
            }
            var manifestFiles: [String] = []
            for name in try FileSystem.listDirectory(fanOutPath) {
                let path = fanOutPath + "/" + name
                let isDirectory = try FileSystem.lstat(path).isDirectory
                let hex = name.hasSuffix(".json") && !isDirectory ? String(name.dropLast(5)) : name
                if let digest = Digest(hex: hex), keptTrees.contains(digest) { continue }
                if isDirectory {
                    try discard(path)
                } else {
                    manifestFiles.append(path)
                }
            }
            for path in manifestFiles {
                report.removedBytes += try FileSystem.lstat(path).size
                report.removedObjects += 1
                try FileSystem.removeFile(path)
            }
            try FileSystem.fsyncDirectory(fanOutPath)
            _ = rmdir(fanOutPath)
        }

        // Blobs.
        for fanOut in try FileSystem.listDirectory(objectsDirectory) {
            let fanOutPath = objectsDirectory + "/" + fanOut
            guard try FileSystem.lstat(fanOutPath).isDirectory else {
                try FileSystem.removeFile(fanOutPath)
                continue
            }
            for name in try FileSystem.listDirectory(fanOutPath) {
                if let blob = BlobID(fileName: name), keptBlobs.contains(blob) { continue }
                let path = fanOutPath + "/" + name
                let status = try FileSystem.lstat(path)
                // Bytes are only freed with the last link (runs may export hard links).
                if status.linkCount <= 1 { report.removedBytes += status.size }
                report.removedObjects += 1
                try removeObject(path)
            }
            _ = rmdir(fanOutPath)
        }
        try FileSystem.fsyncDirectory(treesDirectory)
        try FileSystem.fsyncDirectory(objectsDirectory)

        // Staging areas of dead processes on every host, then only the stale
        // locks: a live holder on another host may not show in `.store.lock`'s flock.
        removeStaleTemporaries(allHosts: true)
        report.removedLocks = try staleLockFiles(remove: true).count
        try removeOrphanedResumableAreas(olderThan: resumableMaximumAge, report: &report)
        return report
    }
}
