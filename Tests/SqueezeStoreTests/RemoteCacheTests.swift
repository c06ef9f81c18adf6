import Foundation
import Glibc
import SqueezeServersTestSupport
import Testing

@testable import SqueezeStore
import SqueezeSupport

/// The remote cache against a real nginx on loopback (WebDAV `PUT`).
@Suite struct RemoteCacheTests {
    static func server(authentication: (user: String, password: String)? = nil) throws -> NginxServer? {
        guard ExternalRequirement.check(NginxServer.unavailableReason, record: { Issue.record(Comment(rawValue: $0)) }) else { return nil }
        return try NginxServer(authentication: authentication)
    }

    /// A store holding one entry with a file output and a directory output
    /// (nested, an executable file, an empty file, an empty directory).
    static func populatedStore(in directory: StoreTestDirectory) throws -> (ContentStore, StageEntry) {
        let store = try ContentStore(root: directory.path + "/a")
        let file = try store.ingest(try directory.write("report.json", "{\"accuracy\": 0.5}\n"))
        try directory.write("model/weights.bin", (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try directory.write("model/sub/config.json", "{}")
        try directory.write("model/run.sh", "#!/bin/sh\n", mode: 0o755)
        try directory.write("model/empty", "")
        _ = try directory.makeDirectory("model/nothing")
        let tree = try store.ingest(directory.path + "/model")
        let entry = storeTestEntry(key: "k1", outputs: ["report": file, "model": tree])
        try store.save(entry)
        return (store, entry)
    }

    @Test func uploadPutsObjectsBeforeTheEntryAndAnotherStoreFetchesThem() async throws {
        guard let server = try Self.server() else { return }
        let directory = try StoreTestDirectory()
        let (store, entry) = try Self.populatedStore(in: directory)
        let remote = RemoteCache(baseURL: server.baseURL.appendingPathComponent("cache"))

        #expect(try await remote.entry(forKey: "k1") == nil)
        let sent = try await remote.upload(entry, from: store)
        // The report, 4 distinct blobs of the tree (the empty file too) and its manifest.
        #expect(sent.objects == 6, "\(sent)")
        #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/cache/ac/k1"))
        for ref in entry.outputs.values {
            #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/cache/cas/" + ref.digest.hex))
        }
        let puts = server.accessLines().filter { $0.contains("\"PUT ") }
        #expect(puts.count == 7, "\(puts)")
        #expect(puts.last?.contains("PUT /cache/ac/k1 ") == true, "the entry goes last: \(puts)")

        let again = try await remote.upload(entry, from: store)
        #expect(again.objects == 0 && again.present == 6, "\(again)")

        let other = try ContentStore(root: directory.path + "/b")
        let remoteEntry = try #require(try await remote.entry(forKey: "k1"))
        #expect(remoteEntry == entry)
        let fetched = try await remote.fetch(remoteEntry, into: other)
        #expect(fetched.objects == 5, "the empty file is not downloaded: \(fetched)")
        #expect(other.entry(forKey: "k1") == entry)
        let model = try other.path(for: try #require(entry.outputs["model"]))
        #expect(FileManager.default.contents(atPath: model + "/sub/config.json") == Data("{}".utf8))
        #expect(try FileSystem.stat(model + "/run.sh").isOwnerExecutable)
        #expect(try FileSystem.stat(model + "/empty").size == 0)
        #expect(try FileSystem.stat(model + "/nothing").isDirectory)
        #expect(try other.digest(ofPath: model) == entry.outputs["model"])
        #expect(other.verifyAll(repair: false).isClean)

        let refetched = try await remote.fetch(remoteEntry, into: other)
        #expect(refetched.objects == 0, "\(refetched)")
    }

    @Test func aCorruptRemoteObjectIsRefusedAndTheNextUploadReplacesIt() async throws {
        guard let server = try Self.server() else { return }
        let directory = try StoreTestDirectory()
        let (store, entry) = try Self.populatedStore(in: directory)
        let remote = RemoteCache(baseURL: server.baseURL)
        try await remote.upload(entry, from: store)

        let report = try #require(entry.outputs["report"])
        let served = server.dataDirectory + "/cas/" + report.digest.hex
        let good = try #require(FileManager.default.contents(atPath: served))
        storeTestFlip(served)

        let other = try ContentStore(root: directory.path + "/b")
        await #expect(throws: RemoteCacheError.self) { try await remote.fetch(entry, into: other) }
        do {
            try await remote.fetch(entry, into: other)
        } catch let error as RemoteCacheError {
            guard case .corrupt(let digest, _) = error else { Issue.record("\(error)"); return }
            #expect(digest == report.digest)
            #expect(error.description.contains(report.digest.hex))
        }
        #expect(other.entry(forKey: entry.key) == nil, "no entry without its objects")
        #expect(!other.contains(report))

        // Same size, so HEAD alone would keep the bad copy; the upload knows better.
        try await remote.upload(entry, from: store)
        #expect(FileManager.default.contents(atPath: served) == good)
        try await remote.fetch(entry, into: other)
        #expect(other.entry(forKey: entry.key) == entry)
    }

    @Test func aCorruptManifestIsRefused() async throws {
        guard let server = try Self.server() else { return }
        let directory = try StoreTestDirectory()
        let (store, entry) = try Self.populatedStore(in: directory)
        let remote = RemoteCache(baseURL: server.baseURL)
        try await remote.upload(entry, from: store)
        let model = try #require(entry.outputs["model"])
        try server.place(Data("{\"entries\":[],\"format\":1}".utf8), at: "cas/" + model.digest.hex)
        let other = try ContentStore(root: directory.path + "/b")
        await #expect(throws: RemoteCacheError.corrupt(model.digest, reason: "the directory manifest's bytes have SHA-256 \(Hashing.sha256(Array("{\"entries\":[],\"format\":1}".utf8)).hex)")) {
            try await remote.fetch(entry, into: other)
        }
        #expect(other.entry(forKey: entry.key) == nil)
    }

    @Test func anEntryWhoseObjectIsGoneIsNotUsed() async throws {
        guard let server = try Self.server() else { return }
        let directory = try StoreTestDirectory()
        let (store, entry) = try Self.populatedStore(in: directory)
        let remote = RemoteCache(baseURL: server.baseURL)
        try await remote.upload(entry, from: store)
        let report = try #require(entry.outputs["report"])
        try FileManager.default.removeItem(atPath: server.dataDirectory + "/cas/" + report.digest.hex)
        let other = try ContentStore(root: directory.path + "/b")
        await #expect(throws: RemoteCacheError.missingObject(report.digest)) { try await remote.fetch(entry, into: other) }
        #expect(other.entry(forKey: entry.key) == nil)
    }

    @Test func aServerThatIsGoneIsAServerFailure() async throws {
        guard let server = try Self.server() else { return }
        let remote = RemoteCache(baseURL: server.baseURL)
        server.stop()
        do {
            _ = try await remote.entry(forKey: "k1")
            Issue.record("a stopped server answered")
        } catch {
            #expect(RemoteCache.isServerFailure(error), "\(error)")
        }
        #expect(remote.disable(because: "gone"))
        #expect(!remote.disable(because: "gone again"), "turned off once")
        #expect(remote.disabledReason == "gone")
    }

    @Test func credentialsInTheURLAreUsedAndNeverShown() async throws {
        guard let server = try Self.server(authentication: (user: "ci", password: "s3cret-pw")) else { return }
        let directory = try StoreTestDirectory()
        let (store, entry) = try Self.populatedStore(in: directory)
        var components = try #require(URLComponents(url: server.baseURL, resolvingAgainstBaseURL: false))
        components.user = "ci"
        components.password = "s3cret-pw"
        let withCredentials = RemoteCache(baseURL: try #require(components.url), client: HTTPClient(timeout: 10, authorization: { _ in nil }))
        #expect(!withCredentials.displayURL.contains("s3cret-pw"))
        try await withCredentials.upload(entry, from: store)
        #expect(try await withCredentials.entry(forKey: "k1") == entry)

        let without = RemoteCache(baseURL: server.baseURL, client: HTTPClient(timeout: 10, authorization: { _ in nil }))
        do {
            _ = try await without.entry(forKey: "k1")
            Issue.record("the server answered without credentials")
        } catch {
            #expect(RemoteCache.isServerFailure(error), "\(error)")
            #expect(!"\(error)".contains("s3cret-pw"))
        }
    }

    @Test func theVariantIndexKeepsOneKeyPerVariant() async throws {
        guard let server = try Self.server() else { return }
        let remote = RemoteCache(baseURL: server.baseURL)
        #expect(try await remote.variants(forKey: "any") == [:])
        try await remote.recordVariant("cpu/r2/avx2", key: "k1", under: "any")
        try await remote.recordVariant("reference/r1", key: "k2", under: "any")
        try await remote.recordVariant("cpu/r2/avx2", key: "k3", under: "any")
        #expect(try await remote.variants(forKey: "any") == ["cpu/r2/avx2": "k3", "reference/r1": "k2"])
        try server.place(Data("not json".utf8), at: "ac-any/broken")
        #expect(try await remote.variants(forKey: "broken") == [:])
    }
}

/// Flips the first byte of a file the server serves (same size, other content).
func storeTestFlip(_ path: String) {
    guard var bytes = FileManager.default.contents(atPath: path), !bytes.isEmpty else { return }
    bytes[0] ^= 0xff
    FileManager.default.createFile(atPath: path, contents: bytes)
}
