import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call, with the path it was about.
public struct SystemCallError: Error, CustomStringConvertible {
    public let call: String
    public let path: String
    public let code: Int32

    public init(_ call: String, _ path: String, errno code: Int32 = errno) {
        self.call = call
        self.path = path
        self.code = code
    }

    public var description: String { "\(call)(\(path)): \(String(cString: strerror(code)))" }
}

/// Writes through an open descriptor, retrying short writes and EINTR.
public func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    var offset = 0
    while offset < bytes.count {
        let written = write(descriptor, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
        if written > 0 {
            offset += written
        } else if written < 0 && errno == EINTR {
            continue
        } else {
            throw SystemCallError("write", path)
        }
    }
}

/// Whole-file writes that never leave a partial file: temp file, fsync, rename.
public enum AtomicWrite {
    public static func write(_ data: Data, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = "\(path).tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw SystemCallError("open", temporary) }
        do {
            try data.withUnsafeBytes { try writeAll(descriptor, $0, path: temporary) }
            guard fsync(descriptor) == 0 else { throw SystemCallError("fsync", temporary) }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let failure = SystemCallError("rename", path)
            unlink(temporary)
            throw failure
        }
    }
}

/// A private scratch directory, removed by `remove()` or `removeAll()`.
public struct ScratchDirectory: Sendable {
    public let path: String

    /// Every directory this process created and has not removed yet, so a
    /// teardown hook, which cannot see the setup's state, can clean up.
    private static let live = Mutex<Set<String>>([])

    /// Removes every scratch directory this process created.
    public static func removeAll() {
        let paths = live.withLock { $0 }
        for path in paths.sorted() { ScratchDirectory(existing: path).remove() }
    }

    private init(existing path: String) { self.path = path }

    /// Creates `squeeze-bench-<label>-XXXXXX` under `$SQUEEZE_BENCH_WORK`
    /// (default: the system temporary directory).
    public init(label: String) throws {
        let environment = ProcessInfo.processInfo.environment
        let parent = environment["SQUEEZE_BENCH_WORK"].flatMap { $0.isEmpty ? nil : $0 }
            ?? NSTemporaryDirectory()
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        var template = Array((parent as NSString).appendingPathComponent("squeeze-bench-\(label)-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }
        }
        guard created != nil else { throw SystemCallError("mkdtemp", parent) }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.path = path
        ScratchDirectory.live.withLock { _ = $0.insert(path) }
    }

    public func appending(_ component: String) -> String {
        (path as NSString).appendingPathComponent(component)
    }

    /// Removes the directory; the content store makes its directories
    /// read-only, so on failure everything is made writable and removal retried.
    public func remove() {
        let path = self.path
        ScratchDirectory.live.withLock { _ = $0.remove(path) }
        let manager = FileManager.default
        if (try? manager.removeItem(atPath: path)) != nil { return }
        if let walker = manager.enumerator(atPath: path) {
            while let relative = walker.nextObject() as? String {
                chmod((path as NSString).appendingPathComponent(relative), 0o700)
            }
        }
        chmod(path, 0o700)
        do {
            try manager.removeItem(atPath: path)
        } catch {
            FileHandle.standardError.write(Data("warning: could not remove \(path): \(error)\n".utf8))
        }
    }
}
