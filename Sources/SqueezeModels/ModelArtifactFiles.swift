import Foundation
import SqueezeSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `AtomicFile.Writer` (temporary file beside the target, fsync, rename,
/// directory fsync) with the model files' error type. Model files are hashed
/// as they are written, so sealing an artifact and the store's ingest need
/// not read them again (`KnownDigests`).
package final class AtomicFileWriter {
    let path: String
    private let writer: AtomicFile.Writer

    package init(path: String) throws(ModelFileError) {
        self.path = path
        do {
            writer = try AtomicFile.Writer(path: path, hashing: true)
        } catch {
            throw ModelFileError(file: path, "cannot create a temporary file: \(error)")
        }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws(ModelFileError) {
        do {
            try writer.write(bytes)
        } catch {
            throw ModelFileError(file: path, "cannot write: \(error)")
        }
    }

    package func write(_ bytes: [UInt8]) throws(ModelFileError) {
        do {
            try writer.write(bytes)
        } catch {
            throw ModelFileError(file: path, "cannot write: \(error)")
        }
    }

    package func write(_ text: String) throws(ModelFileError) {
        try write(Array(text.utf8))
    }

    /// Makes the file durable under its final name; returns the lowercase hex
    /// SHA-256 of its bytes.
    @discardableResult
    package func commit() throws(ModelFileError) -> String {
        do {
            return try writer.commit()?.hex ?? ""
        } catch {
            throw ModelFileError(file: path, "cannot commit: \(error)")
        }
    }
}

/// File helpers shared by the artifact readers and writers.
public enum ModelFiles {
    /// Bytes per `read(2)` when streaming a file.
    static let chunkSize = 1 << 20

    /// Copies `source` to `destination` atomically; returns the SHA-256 (hex) of the bytes.
    public static func copy(_ source: String, to destination: String) throws(ModelFileError) -> String {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ModelFileError(file: source, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let writer = try AtomicFileWriter(path: destination)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(input, buffer.baseAddress, buffer.count)
            if count > 0 {
                try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw ModelFileError(file: source, "cannot read: \(String(cString: strerror(errno)))")
            }
        }
        return try writer.commit()
    }

    /// SHA-256 (hex) of the regular file at `path`, streamed.
    public static func sha256(of path: String) throws(ModelFileError) -> String {
        do {
            return try Hashing.sha256(fileAt: path).hex
        } catch {
            throw ModelFileError(file: path, "cannot hash: \(error)")
        }
    }

    /// SHA-256 (hex) of the regular file at `path`: as recorded when this
    /// process wrote it, while it is unchanged since, otherwise streamed.
    static func digest(of path: String) throws(ModelFileError) -> String {
        do {
            if let known = KnownDigests.digest(path: path, status: try FileSystem.stat(path)) { return known.hex }
            return try Hashing.sha256(fileAt: path).hex
        } catch {
            throw ModelFileError(file: path, "cannot hash: \(error)")
        }
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
}
