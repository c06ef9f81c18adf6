import Foundation
import SqueezeServersTestSupport
import SqueezeSupport
import Testing

/// The HTTP client against a real nginx on loopback (WebDAV `PUT`).
@Suite struct HTTPClientTests {
    static func server(limitRate: Int? = nil, authentication: (user: String, password: String)? = nil) throws -> NginxServer? {
        guard ExternalRequirement.check(NginxServer.unavailableReason, record: { Issue.record(Comment(rawValue: $0)) }) else { return nil }
        return try NginxServer(limitRate: limitRate, authentication: authentication)
    }

    static func bytes(_ count: Int, seed: UInt64 = 1) -> Data {
        var state = seed
        return Data((0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        })
    }

    @Test func putHeadGetRoundTrip() async throws {
        guard let server = try Self.server() else { return }
        let client = HTTPClient(timeout: 10)
        let url = server.baseURL.appendingPathComponent("cas/ab/object")
        #expect(await (try? client.head(url))?.status == 404)
        let body = Self.bytes(100_000)
        let put = try await client.put(url, data: body)
        #expect([200, 201, 204].contains(put.status))
        let head = try await client.head(url)
        #expect(head.status == 200)
        #expect(head.contentLength == 100_000)
        let get = try await client.get(url)
        #expect(get.status == 200)
        #expect(get.body == body)
        let part = try await client.get(url, range: 10...19)
        #expect(part.status == 206)
        #expect(part.body == body[10...19])
    }

    @Test func putOfAFileUploadsItsBytes() async throws {
        guard let server = try Self.server() else { return }
        let directory = NSTemporaryDirectory() + "http-put-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let body = Self.bytes(3 << 20, seed: 7)
        try body.write(to: URL(fileURLWithPath: directory + "/blob"))
        let url = server.baseURL.appendingPathComponent("blobs/x")
        #expect([200, 201, 204].contains(try await HTTPClient().put(url, file: directory + "/blob").status))
        #expect(FileManager.default.contents(atPath: server.dataDirectory + "/blobs/x") == body)
    }

    @Test func downloadVerifiesThePin() async throws {
        guard let server = try Self.server() else { return }
        let body = Self.bytes(1_000_000, seed: 3)
        try server.place(body, at: "files/model.bin")
        let directory = NSTemporaryDirectory() + "http-dl-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let url = server.baseURL.appendingPathComponent("files/model.bin")
        let target = directory + "/model.bin"
        let fetched = try await HTTPClient().download(url, to: target, sha256: Hashing.sha256(body), chunkSize: 300_000)
        #expect(fetched == 1_000_000)
        #expect(FileManager.default.contents(atPath: target) == body)
        #expect(!FileManager.default.fileExists(atPath: target + ".partial"))

        let wrong = directory + "/wrong.bin"
        await #expect(throws: HTTPError.self) {
            try await HTTPClient().download(url, to: wrong, sha256: Hashing.sha256(Data("other".utf8)))
        }
        #expect(!FileManager.default.fileExists(atPath: wrong))
        #expect(!FileManager.default.fileExists(atPath: wrong + ".partial"))
    }

    @Test func aPartialDownloadResumesWithTheRest() async throws {
        guard let server = try Self.server() else { return }
        let body = Self.bytes(2_000_000, seed: 5)
        try server.place(body, at: "big.bin")
        let url = server.baseURL.appendingPathComponent("big.bin")
        let directory = NSTemporaryDirectory() + "http-resume-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let target = directory + "/big.bin"
        // What an interrupted attempt left: the first 1.5 MB and the server's ETag.
        let first = try await HTTPClient().get(url, range: 0...1_499_999)
        try first.body.write(to: URL(fileURLWithPath: target + ".partial"))
        try Data((first.head.header("ETag") ?? "").utf8).write(to: URL(fileURLWithPath: target + ".partial.etag"))
        let fetched = try await HTTPClient().download(url, to: target, sha256: Hashing.sha256(body))
        #expect(fetched == 500_000)
        #expect(FileManager.default.contents(atPath: target) == body)
        #expect(server.accessLines().last?.contains(" 206 ") == true)
    }

    @Test func aFileChangedOnTheServerRestartsInsteadOfSplicing() async throws {
        guard let server = try Self.server() else { return }
        let old = Self.bytes(400_000, seed: 8)
        try server.place(old, at: "moving.bin")
        let url = server.baseURL.appendingPathComponent("moving.bin")
        let directory = NSTemporaryDirectory() + "http-moving-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let target = directory + "/moving.bin"
        let first = try await HTTPClient().get(url, range: 0...99_999)
        try first.body.write(to: URL(fileURLWithPath: target + ".partial"))
        try Data((first.head.header("ETag") ?? "").utf8).write(to: URL(fileURLWithPath: target + ".partial.etag"))
        sleep(1)  // a new mtime, hence a new ETag
        let new = Self.bytes(400_000, seed: 9)
        try server.place(new, at: "moving.bin")
        try await HTTPClient().download(url, to: target, sha256: Hashing.sha256(new))
        #expect(FileManager.default.contents(atPath: target) == new)
    }

    @Test func anUnreachableServerIsAnErrorNamingTheURLWithoutCredentials() async throws {
        guard let server = try Self.server() else { return }
        let port = server.port
        server.stop()
        let url = try #require(URL(string: "http://alice:s3cret@127.0.0.1:\(port)/x"))
        do {
            _ = try await HTTPClient(timeout: 5).head(url)
            Issue.record("expected an error")
        } catch let error as HTTPError {
            guard case .unreachable(let shown, _, _) = error else { Issue.record("\(error)"); return }
            #expect(shown == "http://127.0.0.1:\(port)/x")
            #expect(!error.description.contains("s3cret"))
        }
    }

    @Test func credentialsFromTheURLOrNetrcAreSent() async throws {
        guard let server = try Self.server(authentication: ("alice", "s3cret")) else { return }
        try server.place(Data("ok".utf8), at: "private.txt")
        let plain = server.baseURL.appendingPathComponent("private.txt")
        await #expect(throws: HTTPError.status(url: plain.absoluteString, method: "HEAD", status: 401)) {
            try await HTTPClient(timeout: 10, authorization: { _ in nil }).head(plain)
        }
        let withUser = try #require(URL(string: "http://alice:s3cret@127.0.0.1:\(server.port)/private.txt"))
        #expect(try await HTTPClient(authorization: { _ in nil }).get(withUser).body == Data("ok".utf8))

        let directory = NSTemporaryDirectory() + "netrc-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "machine 127.0.0.1\n  login alice\n  password s3cret\n".write(toFile: directory + "/netrc", atomically: true, encoding: .utf8)
        let environment = ["NETRC": directory + "/netrc"]
        let client = HTTPClient(authorization: { Netrc.authorization(for: $0, environment: environment) })
        #expect(try await client.get(plain).body == Data("ok".utf8))
    }

    @Test func netrcParsing() {
        let entries = Netrc.parse("""
            machine cache.example.org login ci password tok3n
            machine other login a password b account x
            default login anon password guest
            """)
        #expect(entries["cache.example.org"] == Netrc.Entry(login: "ci", password: "tok3n"))
        #expect(entries["other"] == Netrc.Entry(login: "a", password: "b"))
        #expect(entries[""] == Netrc.Entry(login: "anon", password: "guest"))
    }
}
