import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written so that a crash never leaves it half done: bytes go to a
/// temporary file beside the target, which `commit` fsyncs and renames over
/// the target before fsyncing the directory. Dropped without `commit`, the
/// temporary file is removed and the target is untouched.
package final class AtomicFileWriter {
    let path: String
    private let temporaryPath: String
    private var fd: Int32
    private var hasher: SHA256?

    /// Starts writing `path`; with `hashing`, `commit` returns the SHA-256 of what was written.
    package init(path: String, hashing: Bool = false) throws(ModelFileError) {
        self.path = path
        self.temporaryPath = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        self.hasher = hashing ? SHA256() : nil
        guard fd >= 0 else { throw Self.failure(path, "create \(temporaryPath)") }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws(ModelFileError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        hasher?.update(bufferPointer: bytes)
        var written = 0
        while written < bytes.count {
            let n = systemWrite(fd, base + written, bytes.count - written)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw Self.failure(path, "write \(temporaryPath)") }
            written += n
        }
    }

    package func write(_ bytes: [UInt8]) throws(ModelFileError) {
        // `withUnsafeBytes` rethrows untyped errors; carry the typed one out.
        let failure = bytes.withUnsafeBytes { raw -> ModelFileError? in
            do throws(ModelFileError) {
                try write(raw)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    package func write(_ text: String) throws(ModelFileError) {
        try write(Array(text.utf8))
    }

    /// Makes the file durable under its final name; returns the lowercase hex
    /// SHA-256 of its bytes when hashing (otherwise nil).
    @discardableResult
    package func commit() throws(ModelFileError) -> String? {
        guard fsync(fd) == 0 else { throw Self.failure(path, "fsync \(temporaryPath)") }
        let descriptor = fd
        fd = -1
        guard close(descriptor) == 0 else {
            unlink(temporaryPath)
            throw Self.failure(path, "close \(temporaryPath)")
        }
        guard rename(temporaryPath, path) == 0 else {
            let error = Self.failure(path, "rename \(temporaryPath) to \(path)")
            unlink(temporaryPath)
            throw error
        }
        Self.syncDirectory(of: path)
        return hasher.map { Self.hex($0.finalize()) }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporaryPath)
        }
    }

    /// Best effort: a directory that cannot be opened or synced (some
    /// filesystems refuse) does not make the write fail.
    static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    static func failure(_ path: String, _ what: String) -> ModelFileError {
        ModelFileError(file: path, "cannot \(what): \(String(cString: strerror(errno)))")
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }
}

/// File helpers shared by the artifact readers and writers.
enum ModelFiles {
    /// Bytes per `read(2)` when streaming a file.
    static let chunkSize = 1 << 20

    /// Copies `source` to `destination` atomically; returns the SHA-256 (hex) of the bytes.
    static func copy(_ source: String, to destination: String) throws(ModelFileError) -> String {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw AtomicFileWriter.failure(source, "open") }
        defer { close(input) }
        let writer = try AtomicFileWriter(path: destination, hashing: true)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(input, buffer.baseAddress, buffer.count)
            if count > 0 {
                try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw AtomicFileWriter.failure(source, "read")
            }
        }
        return try writer.commit() ?? ""
    }

    /// SHA-256 (hex) of the file at `path`, streamed.
    static func sha256(of path: String) throws(ModelFileError) -> String {
        let input = open(path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw AtomicFileWriter.failure(path, "open") }
        defer { close(input) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        while true {
            let count = read(input, buffer.baseAddress, buffer.count)
            if count > 0 {
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw AtomicFileWriter.failure(path, "read")
            }
        }
        return AtomicFileWriter.hex(hasher.finalize())
    }

    /// Whether `path` is a regular file (symbolic links followed).
    static func isRegularFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    /// Whether `path` is a directory (symbolic links followed).
    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func jsonString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// POSIX `write`, which methods named `write` would otherwise shadow.
func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buffer, count)
    #else
    Darwin.write(fd, buffer, count)
    #endif
}
