import Foundation
import Synchronization
import SqueezeSupport

/// A cache shared between machines over HTTP, in the shape of Bazel's HTTP
/// remote cache: `GET`/`PUT`/`HEAD` of `<base>/cas/<sha256 hex>` for content
/// (file blobs and directory manifests, each under the digest of its bytes)
/// and of `<base>/ac/<key>` for stage entries (the `StageEntry` JSON).
/// nginx with WebDAV `PUT` serves it, as does bazel-remote.
///
/// Uploads put every blob and manifest first (skipping what `HEAD` shows is
/// there with the right size) and the entry last, so a visible entry implies
/// its objects; the server writes a `PUT` body aside and renames it into
/// place, so a partial object is never visible. Downloads are verified by
/// digest before anything enters the local store: a remote object whose bytes
/// do not match is `RemoteCacheError.corrupt` (a cache miss for the caller)
/// and is uploaded again, regardless of `HEAD`, by the next upload.
///
/// `<base>/ac-any/<variant key>` lists, for one variant key, the entry keys
/// uploaded under each variant (`{"format":1,"variants":{VARIANT:KEY}}`);
/// the engine keys it by the key material without the backend fingerprint,
/// so a miss can say that another machine's arithmetic has an entry. It is
/// informational: two machines writing it at once may drop one variant.
///
/// Knows no recipes: it moves entries and their content between a
/// `ContentStore` and the server. Credentials come from the URL's user
/// information or `~/.netrc` (see `HTTPClient`), and `displayURL` is the
/// base without them, for messages and records.
public final class RemoteCache: Sendable {
    public let baseURL: URL
    /// `baseURL` without user name and password.
    public let displayURL: String
    let client: HTTPClient
    private let state = Mutex(State())

    struct State {
        var disabledReason: String?
        var uploadsDisabledReason: String?
        /// Digests whose remote copy failed verification in this process.
        var suspect: Set<Digest> = []
    }

    public init(baseURL: URL, client: HTTPClient = HTTPClient(timeout: 30)) {
        self.baseURL = baseURL
        self.displayURL = HTTPClient.redacted(baseURL)
        self.client = client
    }

    /// Bytes and objects one `fetch` or `upload` moved.
    public struct Transfer: Sendable, Equatable {
        /// Blobs and manifests sent or received.
        public var objects = 0
        public var bytes: Int64 = 0
        /// Objects not moved because the other side already had them.
        public var present = 0

        public init() {}

        public static func += (lhs: inout Transfer, rhs: Transfer) {
            lhs.objects += rhs.objects
            lhs.bytes += rhs.bytes
            lhs.present += rhs.present
        }
    }

    // MARK: Availability

    /// Why the remote is off for the rest of this process, or nil while it is used.
    public var disabledReason: String? { state.withLock { $0.disabledReason } }

    /// Turns the remote off for the rest of this process; true for the call
    /// that turned it off, so its caller warns once.
    @discardableResult
    public func disable(because reason: String) -> Bool {
        state.withLock { state in
            guard state.disabledReason == nil else { return false }
            state.disabledReason = reason
            return true
        }
    }

    /// Why uploads are off for the rest of this process (the server refused
    /// a `PUT`: read-only credentials), or nil while they are sent.
    public var uploadsDisabledReason: String? { state.withLock { $0.disabledReason ?? $0.uploadsDisabledReason } }

    /// Turns uploads off for the rest of this process; true for the call that turned them off.
    @discardableResult
    public func disableUploads(because reason: String) -> Bool {
        state.withLock { state in
            guard state.uploadsDisabledReason == nil else { return false }
            state.uploadsDisabledReason = reason
            return true
        }
    }

    /// Whether `error` is the server refusing an upload (HTTP 401 or 403 to a
    /// `PUT`): reading may still work, as with read-only credentials.
    public static func isUploadRefusal(_ error: any Error) -> Bool {
        if case .status(_, "PUT", let status)? = error as? HTTPError { return status == 401 || status == 403 }
        return false
    }

    /// Whether `error` means the server cannot serve this process at all
    /// (unreachable, credentials refused, a server error), rather than one
    /// missing or bad object: such an error turns the remote off.
    public static func isServerFailure(_ error: any Error) -> Bool {
        switch error as? HTTPError {
        case .unreachable?: return true
        case .status(_, _, let status)?: return status == 401 || status == 403 || status >= 500
        case .protocolError?: return true
        case .digestMismatch?, nil: return false
        }
    }

    // MARK: URLs

    func contentURL(_ digest: Digest) -> URL { baseURL.appendingPathComponent("cas").appendingPathComponent(digest.hex) }
    func entryURL(_ key: String) -> URL { baseURL.appendingPathComponent("ac").appendingPathComponent(key) }
    func variantsURL(_ key: String) -> URL { baseURL.appendingPathComponent("ac-any").appendingPathComponent(key) }

    // MARK: Entries

    /// The remote entry for `key`, or nil when the server has none. An entry
    /// that does not decode, or names another key, is `.corrupt`.
    public func entry(forKey key: String) async throws -> StageEntry? {
        try checkKey(key)
        let url = entryURL(key)
        let response = try await client.get(url)
        if response.status == 404 { return nil }
        guard (200..<300).contains(response.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "GET", status: response.status)
        }
        let entry: StageEntry
        do {
            entry = try SqueezeJSON.decode(StageEntry.self, from: Array(response.body))
        } catch {
            throw RemoteCacheError.corruptEntry(key: key, reason: "not a valid stage entry: \(error)")
        }
        guard entry.key == key else {
            throw RemoteCacheError.corruptEntry(key: key, reason: "the entry is for key \(entry.key)")
        }
        return entry
    }

    /// Whether the server has an entry for `key` (one `HEAD`).
    public func hasEntry(forKey key: String) async throws -> Bool {
        try checkKey(key)
        let url = entryURL(key)
        let head = try await client.head(url)
        if head.status == 404 { return false }
        guard (200..<300).contains(head.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "HEAD", status: head.status)
        }
        return true
    }

    // MARK: Download

    /// Brings every output of `entry` into `store`, each object verified by
    /// its digest before it enters, then saves the entry there. Objects the
    /// store already holds are not downloaded.
    @discardableResult
    public func fetch(_ entry: StageEntry, into store: ContentStore) async throws -> Transfer {
        try checkKey(entry.key)
        var transfer = Transfer()
        for (_, ref) in entry.outputs.sorted(by: { $0.key < $1.key }) {
            switch ref.type {
            case .file:
                transfer += try await fetchBlob(BlobID(digest: ref.digest, executable: false), size: ref.size, into: store)
            case .directory:
                transfer += try await fetchTree(ref, into: store)
            }
        }
        try store.save(entry)
        return transfer
    }

    private func fetchTree(_ ref: ArtifactRef, into store: ContentStore) async throws -> Transfer {
        var transfer = Transfer()
        let manifestBytes: [UInt8]
        if let local = try FileSystem.readFileIfPresent(store.manifestPath(ref.digest)), Hashing.sha256(local) == ref.digest {
            manifestBytes = local
            transfer.present += 1
        } else {
            let url = contentURL(ref.digest)
            let response = try await client.get(url)
            if response.status == 404 { throw RemoteCacheError.missingObject(ref.digest) }
            guard (200..<300).contains(response.status) else {
                throw HTTPError.status(url: HTTPClient.redacted(url), method: "GET", status: response.status)
            }
            manifestBytes = Array(response.body)
            guard Hashing.sha256(manifestBytes) == ref.digest else {
                markSuspect(ref.digest)
                throw RemoteCacheError.corrupt(ref.digest, reason: "the directory manifest's bytes have SHA-256 \(Hashing.sha256(manifestBytes).hex)")
            }
            transfer.objects += 1
            transfer.bytes += Int64(manifestBytes.count)
        }
        let manifest: TreeManifest
        do {
            manifest = try TreeManifest.parse(manifestBytes, origin: displayURL + "/cas/" + ref.digest.hex)
        } catch {
            markSuspect(ref.digest)
            throw RemoteCacheError.corrupt(ref.digest, reason: "\(error)")
        }
        guard manifest.totalSize == ref.size else {
            throw RemoteCacheError.corrupt(ref.digest, reason: "the directory holds \(manifest.totalSize) bytes but the entry says \(ref.size)")
        }
        var sizes: [Digest: Int64] = [:]
        for entry in manifest.entries {
            if case .file(let digest, let size, _) = entry.kind { sizes[digest] = size }
        }
        for blob in manifest.blobs.sorted(by: { $0.fileName < $1.fileName }) {
            transfer += try await fetchBlob(blob, size: sizes[blob.digest] ?? 0, into: store)
        }
        try store.writeManifest(ref.digest, manifestBytes)
        _ = try store.materialize(ref.digest, manifest)
        return transfer
    }

    /// One blob into `objects/`: downloaded into the store's staging area
    /// (resumable, verified against `blob.digest` by `HTTPClient.download`),
    /// then linked into place.
    private func fetchBlob(_ blob: BlobID, size: Int64, into store: ContentStore) async throws -> Transfer {
        var transfer = Transfer()
        let object = store.blobPath(blob)
        if try FileSystem.lstatIfPresent(object)?.size == size, try store.isValidBlob(at: object, blob: blob) {
            transfer.present = 1
            return transfer
        }
        let staged = store.temporaryPath("remote")
        defer {
            try? FileSystem.removeFile(staged)
            try? FileSystem.removeFile(staged + ".partial")
            try? FileSystem.removeFile(staged + ".partial.etag")
        }
        if size == 0 {
            // An empty file: nothing to ask for (a range request on it is unsatisfiable).
            guard blob.digest == Hashing.sha256([UInt8]()) else {
                throw RemoteCacheError.corrupt(blob.digest, reason: "an empty file cannot have this digest")
            }
            try AtomicFile.write([UInt8](), to: staged, temporaryDirectory: store.privateTemporary)
        } else {
            let url = contentURL(blob.digest)
            do {
                try await client.download(url, to: staged, sha256: blob.digest)
            } catch HTTPError.digestMismatch(_, _, let actual) {
                markSuspect(blob.digest)
                throw RemoteCacheError.corrupt(blob.digest, reason: "its bytes have SHA-256 \(actual.hex)")
            } catch HTTPError.status(_, _, 404) {
                throw RemoteCacheError.missingObject(blob.digest)
            }
            transfer.objects = 1
            transfer.bytes = size
        }
        try FileSystem.chmod(staged, blob.executable ? 0o555 : 0o444)
        try FileSystem.fsyncFile(staged)
        let status = try FileSystem.lstat(staged)
        guard status.size == size else {
            markSuspect(blob.digest)
            throw RemoteCacheError.corrupt(blob.digest, reason: "it has \(status.size) bytes, not \(size)")
        }
        guard try store.placeBlob(staged, blob: blob, status: status) else {
            throw StoreError(.io, path: staged, "cannot link a downloaded object into \(store.root)/objects")
        }
        return transfer
    }

    private func markSuspect(_ digest: Digest) {
        _ = state.withLock { $0.suspect.insert(digest) }
    }

    // MARK: Upload

    /// Sends every output of `entry` from `store` (each verified locally
    /// first), blobs and manifests before the entry itself.
    @discardableResult
    public func upload(_ entry: StageEntry, from store: ContentStore) async throws -> Transfer {
        try checkKey(entry.key)
        var transfer = Transfer()
        for (_, ref) in entry.outputs.sorted(by: { $0.key < $1.key }) {
            // Verifies (re-hashing what changed since it was last verified) and, for a directory, materializes.
            _ = try store.path(for: ref)
            switch ref.type {
            case .file:
                transfer += try await uploadObject(ref.digest, size: ref.size, path: store.blobPath(BlobID(digest: ref.digest, executable: false)))
            case .directory:
                let manifest = try store.loadManifest(ref.digest)
                var sizes: [Digest: Int64] = [:]
                for item in manifest.entries {
                    if case .file(let digest, let size, _) = item.kind { sizes[digest] = size }
                }
                var sent: Set<Digest> = []
                for blob in manifest.blobs.sorted(by: { $0.fileName < $1.fileName }) where sent.insert(blob.digest).inserted {
                    transfer += try await uploadObject(blob.digest, size: sizes[blob.digest] ?? 0, path: store.blobPath(blob))
                }
                let manifestPath = store.manifestPath(ref.digest)
                let size = try FileSystem.lstat(manifestPath).size
                transfer += try await uploadObject(ref.digest, size: size, path: manifestPath)
            }
        }
        let bytes = try SqueezeJSON.encode(entry)
        try await put(entryURL(entry.key), data: Data(bytes))
        return transfer
    }

    /// `PUT cas/<digest>` unless `HEAD` shows an object of that size there
    /// (and it was not found corrupt in this process).
    private func uploadObject(_ digest: Digest, size: Int64, path: String) async throws -> Transfer {
        var transfer = Transfer()
        let url = contentURL(digest)
        let suspect = state.withLock { $0.suspect.contains(digest) }
        if !suspect {
            let head = try await client.head(url)
            if (200..<300).contains(head.status), head.contentLength == size {
                transfer.present = 1
                return transfer
            }
            guard head.status == 404 || (200..<300).contains(head.status) else {
                throw HTTPError.status(url: HTTPClient.redacted(url), method: "HEAD", status: head.status)
            }
        }
        let answer = try await client.put(url, file: path)
        guard (200..<300).contains(answer.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "PUT", status: answer.status)
        }
        state.withLock { _ = $0.suspect.remove(digest) }
        transfer.objects = 1
        transfer.bytes = size
        return transfer
    }

    private func put(_ url: URL, data: Data) async throws {
        let answer = try await client.put(url, data: data)
        guard (200..<300).contains(answer.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "PUT", status: answer.status)
        }
    }

    // MARK: Variants

    private struct VariantIndex: Codable {
        var format: Int
        var variants: [String: String]
    }

    /// Variant → entry key recorded under `variantKey` (empty when none, or unreadable).
    public func variants(forKey variantKey: String) async throws -> [String: String] {
        try checkKey(variantKey)
        let url = variantsURL(variantKey)
        let response = try await client.get(url)
        if [400, 404, 405, 501].contains(response.status) { return [:] }
        guard (200..<300).contains(response.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "GET", status: response.status)
        }
        guard let index = try? SqueezeJSON.decode(VariantIndex.self, from: Array(response.body)) else { return [:] }
        return index.variants.filter { StageEntry.isValidKey($0.value) }
    }

    /// Adds `variant` → `key` to the index under `variantKey`. A server
    /// that does not take `ac-any/` (bazel-remote serves only `ac/` and
    /// `cas/`: 400, 404, 405 or 501) is left without the index, silently.
    public func recordVariant(_ variant: String, key: String, under variantKey: String) async throws {
        try checkKey(key)
        var variants = try await self.variants(forKey: variantKey)
        guard variants[variant] != key else { return }
        variants[variant] = key
        let url = variantsURL(variantKey)
        let answer = try await client.put(url, data: Data(try SqueezeJSON.encode(VariantIndex(format: 1, variants: variants))))
        guard (200..<300).contains(answer.status) || [400, 404, 405, 501].contains(answer.status) else {
            throw HTTPError.status(url: HTTPClient.redacted(url), method: "PUT", status: answer.status)
        }
    }

    private func checkKey(_ key: String) throws {
        guard StageEntry.isValidKey(key) else {
            throw StoreError(.invalidKey, path: "", "stage key `\(key)` is not a plain file name")
        }
    }
}

/// What the remote cache held that cannot be used.
public enum RemoteCacheError: Error, CustomStringConvertible, Equatable {
    /// A downloaded object whose bytes do not match its digest.
    case corrupt(Digest, reason: String)
    /// An entry names an object the server does not have.
    case missingObject(Digest)
    /// An entry that does not decode or names another key.
    case corruptEntry(key: String, reason: String)

    public var description: String {
        switch self {
        case .corrupt(let digest, let reason):
            return "remote object \(digest) is corrupt (\(reason)); not used"
        case .missingObject(let digest):
            return "remote object \(digest) is missing although an entry names it; not used"
        case .corruptEntry(let key, let reason):
            return "remote entry \(key) is unreadable (\(reason)); not used"
        }
    }
}
