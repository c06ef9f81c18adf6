import Foundation
import Glibc

/// A real nginx (Debian's package, WebDAV `PUT` on) serving a scratch
/// directory on a loopback port, for the HTTP tests: the remote cache and
/// `url:` sources. `scripts/bootstrap` installs nginx; without it the tests
/// skip with a printed reason, and fail under `CI=true`.
///
/// The set-up is the one `../shared/design/nginx-cache-server.md` verified:
/// `daemon off`, everything (pid, logs, body temp files) in the scratch
/// directory, data and temp directories writable by the unprivileged worker.
public final class NginxServer: @unchecked Sendable {
    /// Served files: `http://127.0.0.1:PORT/x` is `dataDirectory/x`.
    public let dataDirectory: String
    public let scratch: String
    public let port: Int
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(port)") ?? URL(fileURLWithPath: "/") }
    public var accessLog: String { scratch + "/logs/access.log" }
    public var errorLog: String { scratch + "/logs/error.log" }
    private var process: Process?

    /// Why nginx cannot run here, or nil when it can.
    public static var unavailableReason: String? {
        executable == nil ? "nginx is not installed (scripts/bootstrap installs Debian's nginx)" : nil
    }

    static var executable: String? {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts nginx on a free loopback port. `limitRate` (bytes per second)
    /// slows responses down, so a test can interrupt a download midway;
    /// `authentication` (user, password) requires Basic credentials;
    /// `readOnly` refuses every method but `GET` and `HEAD` with HTTP 403.
    public init(limitRate: Int? = nil, authentication: (user: String, password: String)? = nil, readOnly: Bool = false) throws {
        guard let nginx = Self.executable else { throw ServerError("nginx is not installed") }
        scratch = NSTemporaryDirectory() + "squeeze-nginx-" + UUID().uuidString
        dataDirectory = scratch + "/data"
        for directory in [scratch, dataDirectory, scratch + "/tmp", scratch + "/logs"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            chmod(directory, 0o777)
        }
        var lastError = ""
        for _ in 0..<20 {
            let port = Int.random(in: 20000..<60000)
            var auth = ""
            if let authentication {
                let file = scratch + "/htpasswd"
                let line = "\(authentication.user):{PLAIN}\(authentication.password)\n"
                try line.write(toFile: file, atomically: true, encoding: .utf8)
                chmod(file, 0o644)
                auth = "auth_basic \"squeeze\";\n      auth_basic_user_file \(file);"
            }
            let limit = limitRate.map { "limit_rate \($0);" } ?? ""
            let methods = readOnly ? "limit_except GET { deny all; }" : ""
            let configuration = """
                daemon off;
                master_process on;
                worker_processes 1;
                pid \(scratch)/nginx.pid;
                error_log \(scratch)/logs/error.log info;
                events {}
                http {
                  access_log \(scratch)/logs/access.log;
                  client_body_temp_path \(scratch)/tmp;
                  server {
                    listen 127.0.0.1:\(port);
                    location / {
                      root \(dataDirectory);
                      dav_methods PUT DELETE;
                      create_full_put_path on;
                      dav_access user:rw group:r all:r;
                      client_max_body_size 0;
                      \(limit)
                      \(auth)
                      \(methods)
                    }
                  }
                }
                """
            let file = scratch + "/nginx.conf"
            try configuration.write(toFile: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: nginx)
            process.arguments = ["-c", file, "-e", scratch + "/logs/error.log"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if Self.waitUntilListening(port: port, process: process) {
                self.port = port
                self.process = process
                return
            }
            process.terminate()
            process.waitUntilExit()
            lastError = (try? String(contentsOfFile: scratch + "/logs/error.log", encoding: .utf8)) ?? ""
        }
        throw ServerError("nginx did not start: \(lastError)")
    }

    /// Stops the server (the master and its worker); calling it again does nothing.
    public func stop() {
        guard let process else { return }
        self.process = nil
        if process.isRunning {
            kill(process.processIdentifier, SIGQUIT)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// Places `data` at `path` under the served root (as the server would serve it).
    public func place(_ data: Data, at path: String) throws {
        let target = dataDirectory + "/" + path
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: target))
        chmod(target, 0o644)
    }

    /// The request lines of the access log so far (`GET /x HTTP/1.1` with status and bytes).
    public func accessLines() -> [String] {
        ((try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    private static func waitUntilListening(port: Int, process: Process) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard process.isRunning else { return false }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(fd)
            if connected { return true }
            usleep(50_000)
        }
        return false
    }
}

/// A test server that could not be started.
public struct ServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Skips a test that needs an external program which is missing: a printed
/// reason on a user's machine, a failure under `CI=true` (CI installs it).
public enum ExternalRequirement {
    /// True when the test may go on; otherwise prints or records why not.
    public static func check(_ unavailableReason: String?, record: (String) -> Void) -> Bool {
        guard let reason = unavailableReason else { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            record("test cannot run on CI: \(reason)")
        } else {
            print("skipping: \(reason)")
        }
        return false
    }
}
