import Foundation
import Glibc
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The one HTTP client of Squeeze (Foundation's `URLSession`, libcurl on
/// Linux): `HEAD`, `GET`, `PUT` and a resumable, verified download. Used by
/// the remote cache and by `url:` sources. Errors never show credentials:
/// every URL in a message passes through `HTTPClient.redacted`.
public struct HTTPClient: Sendable {
    /// Seconds a request may wait for the next bytes before it fails.
    public var timeout: Double
    /// The `Authorization` header for a URL, or nil to send none.
    public var authorization: @Sendable (URL) -> String?

    private let session: URLSession

    public init(timeout: Double = 60, authorization: @escaping @Sendable (URL) -> String? = { Netrc.authorization(for: $0) }) {
        self.timeout = timeout
        self.authorization = authorization
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalAndRemoteCacheData
        configuration.timeoutIntervalForRequest = timeout
        session = URLSession(configuration: configuration, delegate: ChallengeRefusal(), delegateQueue: nil)
    }

    /// What a response said, without its body.
    public struct Head: Sendable {
        public var status: Int
        public var headers: [String: String]

        /// A header by name, case-insensitively.
        public func header(_ name: String) -> String? {
            headers.first { $0.key.caseInsensitiveCompare(name) == .orderedSame }?.value
        }

        public var contentLength: Int64? { header("Content-Length").flatMap { Int64($0) } }
    }

    /// A response with its body.
    public struct Response: Sendable {
        public var head: Head
        public var body: Data
        public var status: Int { head.status }
    }

    /// `HEAD url`.
    public func head(_ url: URL) async throws -> Head {
        try await send(request(url, method: "HEAD")).head
    }

    /// `GET url`, the whole body in memory; `range` asks for `bytes=lower-upper`.
    public func get(_ url: URL, range: ClosedRange<Int64>? = nil, headers: [String: String] = [:]) async throws -> Response {
        var request = request(url, method: "GET")
        if let range { request.setValue("bytes=\(range.lowerBound)-\(range.upperBound)", forHTTPHeaderField: "Range") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        return try await send(request)
    }

    /// `PUT url` with the bytes of the file at `path` as the body.
    public func put(_ url: URL, file path: String) async throws -> Head {
        try await perform(request(url, method: "PUT")) {
            try await session.upload(for: $0, fromFile: URL(fileURLWithPath: path))
        }.head
    }

    /// `PUT url` with `body`.
    public func put(_ url: URL, data body: Data) async throws -> Head {
        try await perform(request(url, method: "PUT")) { try await session.upload(for: $0, from: body) }.head
    }

    /// Downloads `url` to `path`, resuming a previous attempt, and keeps the
    /// file only when its SHA-256 is `sha256`.
    ///
    /// The bytes arrive in ranged `GET`s of `chunkSize` and are appended to
    /// `path + ".partial"` one chunk at a time (fsynced), so an interrupted
    /// download (a killed process, a dropped connection, the server gone)
    /// keeps what it had and the next call asks only for the rest. The
    /// partial file remembers the server's `ETag`; the rest is asked for with
    /// `If-Range`, so a file changed on the server restarts from zero instead
    /// of being spliced. A server without range support sends the whole file.
    /// On a digest mismatch the partial file is removed and nothing is left at
    /// `path`. Returns the number of bytes fetched by this call.
    @discardableResult
    public func download(
        _ url: URL, to path: String, sha256 expected: Digest, chunkSize: Int64 = 8 << 20,
        progress: (@Sendable (_ received: Int64, _ total: Int64?) -> Void)? = nil
    ) async throws -> Int64 {
        let partial = path + ".partial"
        let tagFile = partial + ".etag"
        try FileSystem.makeDirectories(FileSystem.parent(of: path))
        var have = (try? FileSystem.lstatIfPresent(partial))??.size ?? 0
        var etag = have > 0 ? (try? String(contentsOfFile: tagFile, encoding: .utf8)) : nil
        if have == 0 {
            unlink(partial)
            unlink(tagFile)
        }
        var total: Int64?
        var fetched: Int64 = 0
        while total.map({ have < $0 }) ?? true {
            try Task.checkCancellation()
            var headers: [String: String] = [:]
            if have > 0, let etag { headers["If-Range"] = etag }
            let response = try await get(url, range: have...(have + chunkSize - 1), headers: headers)
            switch response.status {
            case 206:
                guard let range = Self.contentRange(response.head.header("Content-Range")), range.start == have else {
                    throw HTTPError.protocolError(url: Self.redacted(url), reason: "a ranged GET answered with an unexpected Content-Range")
                }
                total = range.total
                if etag == nil, let tag = response.head.header("ETag") {
                    etag = tag
                    try AtomicFile.write(Data(tag.utf8), to: tagFile)
                }
                try Self.append(response.body, to: partial, truncatingTo: have)
                have += Int64(response.body.count)
                fetched += Int64(response.body.count)
            case 200:
                // No ranges (or the file changed since the partial was written): the body is the whole file.
                try Self.append(response.body, to: partial, truncatingTo: 0)
                if let tag = response.head.header("ETag") { try AtomicFile.write(Data(tag.utf8), to: tagFile) } else { unlink(tagFile) }
                have = Int64(response.body.count)
                fetched += have
                total = have
            case 416 where have > 0:
                // Asked past the end: the partial file is already complete (or longer than the file now is).
                total = have
            default:
                throw HTTPError.status(url: Self.redacted(url), method: "GET", status: response.status)
            }
            progress?(have, total)
            if response.body.isEmpty, response.status == 206 {
                throw HTTPError.protocolError(url: Self.redacted(url), reason: "the server sent an empty range before the end of the file")
            }
        }
        let actual = try Hashing.sha256(fileAt: partial)
        guard actual == expected else {
            unlink(partial)
            unlink(tagFile)
            throw HTTPError.digestMismatch(url: Self.redacted(url), expected: expected, actual: actual)
        }
        try FileSystem.rename(partial, to: path)
        try FileSystem.fsyncDirectory(FileSystem.parent(of: path))
        unlink(tagFile)
        return fetched
    }

    /// `url` without user name and password, for messages and records.
    public static func redacted(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false),
              components.user != nil || components.password != nil else { return url.absoluteString }
        components.user = nil
        components.password = nil
        return components.string ?? url.absoluteString
    }

    // MARK: - Plumbing

    private func request(_ url: URL, method: String) -> URLRequest {
        var target = url
        var header = authorization(url)
        if var components = URLComponents(url: url, resolvingAgainstBaseURL: false), let user = components.user {
            // Credentials written in the URL become a Basic header; the URL sent carries none.
            let password = components.password ?? ""
            header = "Basic " + Data("\(user.removingPercentEncoding ?? user):\(password.removingPercentEncoding ?? password)".utf8).base64EncodedString()
            components.user = nil
            components.password = nil
            target = components.url ?? url
        }
        var request = URLRequest(url: target, cachePolicy: .reloadIgnoringLocalAndRemoteCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        if let header { request.setValue(header, forHTTPHeaderField: "Authorization") }
        return request
    }

    private func send(_ request: URLRequest) async throws -> Response {
        try await perform(request) { try await session.data(for: $0) }
    }

    /// Runs `transfer` for `request`; a failure becomes an `HTTPError` that
    /// shows no credentials, or a `CancellationError` when the task was cancelled.
    private func perform(
        _ request: URLRequest, _ transfer: (URLRequest) async throws -> (Data, URLResponse)
    ) async throws -> Response {
        let url = request.url ?? URL(fileURLWithPath: "/")
        do {
            let (body, response) = try await transfer(request)
            return Response(head: try Self.head(of: response, url: url), body: body)
        } catch let error as HTTPError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw Self.failure(error, url: url, method: request.httpMethod ?? "GET")
        }
    }

    private static func head(of response: URLResponse, url: URL) throws -> Head {
        guard let http = response as? HTTPURLResponse else {
            throw HTTPError.protocolError(url: redacted(url), reason: "not an HTTP response")
        }
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name] = value }
        }
        return Head(status: http.statusCode, headers: headers)
    }

    /// A request refused by an authentication challenge (see `ChallengeRefusal`) is a 401.
    private static func failure(_ error: any Error, url: URL, method: String) -> HTTPError {
        let code = (error as NSError).code
        if (error as NSError).domain == NSURLErrorDomain, code == NSURLErrorCancelled || code == NSURLErrorUserAuthenticationRequired {
            return .status(url: redacted(url), method: method, status: 401)
        }
        return .unreachable(url: redacted(url), method: method, reason: reason(error))
    }

    private static func reason(_ error: any Error) -> String {
        (error as NSError).localizedDescription
    }

    /// `bytes START-END/TOTAL` → (START, TOTAL); nil when malformed or the total is unknown.
    static func contentRange(_ value: String?) -> (start: Int64, total: Int64)? {
        guard let value, value.hasPrefix("bytes ") else { return nil }
        let parts = value.dropFirst(6).split(separator: "/")
        guard parts.count == 2, let total = Int64(parts[1]),
              let start = parts[0].split(separator: "-").first.flatMap({ Int64($0) }) else { return nil }
        return (start, total)
    }

    /// Appends `bytes` to the file at `path` after cutting it to `length`
    /// bytes, and fsyncs it, so a crash keeps a prefix of the download.
    private static func append(_ bytes: Data, to path: String, truncatingTo length: Int64) throws {
        let fd = try FileSystem.open(path, O_WRONLY | O_CREAT, mode: 0o644)
        defer { close(fd) }
        guard ftruncate(fd, off_t(length)) == 0 else { throw StoreError.io(path, "ftruncate", errno: errno) }
        guard lseek(fd, off_t(length), SEEK_SET) >= 0 else { throw StoreError.io(path, "lseek", errno: errno) }
        try bytes.withUnsafeBytes { try FileSystem.writeAll(fd, $0, path: path) }
        try FileSystem.fsync(fd, path: path)
    }
}

/// Answers an authentication challenge (a 401 with `WWW-Authenticate`) by
/// cancelling the request: credentials go out with the first request or not
/// at all. Without a delegate, Foundation on Linux waits on such a challenge
/// forever; the cancelled request surfaces as HTTP 401.
private final class ChallengeRefusal: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void
    ) {
        completionHandler(.cancelAuthenticationChallenge, nil)
    }
}

/// An HTTP request that did not give what was asked.
public enum HTTPError: Error, CustomStringConvertible, Equatable {
    /// No answer: connection refused, name not resolved, timed out.
    case unreachable(url: String, method: String, reason: String)
    /// An answer with a status that is not success.
    case status(url: String, method: String, status: Int)
    /// Downloaded bytes whose SHA-256 is not the pinned one.
    case digestMismatch(url: String, expected: Digest, actual: Digest)
    /// An answer that breaks HTTP's rules.
    case protocolError(url: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let url, let method, let reason):
            return "\(method) \(url) failed: \(reason)"
        case .status(let url, let method, 401):
            return "\(method) \(url) answered HTTP 401: credentials are missing or refused (give them in ~/.netrc or $NETRC)"
        case .status(let url, let method, let status):
            return "\(method) \(url) answered HTTP \(status)"
        case .digestMismatch(let url, let expected, let actual):
            return "\(url) has SHA-256 \(actual.hex), not the pinned \(expected.hex): the file changed on the server or the pin is wrong; nothing was kept"
        case .protocolError(let url, let reason):
            return "\(url): \(reason)"
        }
    }
}

/// Credentials from `~/.netrc` (or `$NETRC`), the file curl, pip and git read:
/// `machine HOST login USER password SECRET` (and `default`).
public enum Netrc {
    public struct Entry: Equatable, Sendable {
        public var login: String
        public var password: String

        public init(login: String, password: String) {
            self.login = login
            self.password = password
        }
    }

    /// The Basic `Authorization` header for the URL's host, or nil.
    public static func authorization(for url: URL, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let host = url.host, let entry = entry(forHost: host, environment: environment) else { return nil }
        return "Basic " + Data("\(entry.login):\(entry.password)".utf8).base64EncodedString()
    }

    /// The entry for `host` in the netrc file, or nil when there is none (or no readable file).
    public static func entry(forHost host: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Entry? {
        let path = environment["NETRC"] ?? environment["HOME"].map { $0 + "/.netrc" }
        guard let path, let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return parse(text)[host] ?? parse(text)[""]
    }

    /// Entries by machine name; `default` is stored under "".
    public static func parse(_ text: String) -> [String: Entry] {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).map(String.init)
        var entries: [String: Entry] = [:]
        var machine: String?
        var login = ""
        var password = ""
        func flush() {
            if let machine { entries[machine] = entries[machine] ?? Entry(login: login, password: password) }
            machine = nil
            login = ""
            password = ""
        }
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            let next = index + 1 < tokens.count ? tokens[index + 1] : nil
            switch token {
            case "machine":
                flush()
                machine = next
                index += 2
            case "default":
                flush()
                machine = ""
                index += 1
            case "login":
                login = next ?? ""
                index += 2
            case "password":
                password = next ?? ""
                index += 2
            case "account", "macdef":
                index += 2
            default:
                index += 1
            }
        }
        flush()
        return entries
    }
}
