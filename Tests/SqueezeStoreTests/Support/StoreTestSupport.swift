import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

/// A fresh directory under the system temp directory, removed when dropped.
final class StoreTestDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/squeeze-store-test-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw StoreError.io("mkdtemp", "mkdtemp", errno: errno) }
        path = FileSystem.absolute(String(cString: made))
    }

    deinit { try? FileSystem.removeTree(path) }

    /// `path/relative`, creating parent directories.
    @discardableResult
    func write(_ relative: String, _ text: String, mode: mode_t = 0o644) throws -> String {
        try write(relative, Array(text.utf8), mode: mode)
    }

    @discardableResult
    func write(_ relative: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws -> String {
        let full = path + "/" + relative
        try FileSystem.makeDirectories(FileSystem.parent(of: full))
        guard FileManager.default.createFile(atPath: full, contents: Data(bytes)) else {
            throw StoreError(.io, path: full, "could not create test file")
        }
        try FileSystem.chmod(full, mode)
        return full
    }

    func makeDirectory(_ relative: String) throws -> String {
        let full = path + "/" + relative
        try FileSystem.makeDirectories(full)
        return full
    }
}

/// Sets a file's mtime (keeping it in the past avoids the racy-stat window).
func storeTestSetMtime(_ path: String, seconds: Int, nanoseconds: Int = 0) throws {
    var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
    guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw StoreError.io(path, "utimensat", errno: errno) }
}

func storeTestMtime(_ path: String) throws -> (Int, Int) {
    let status = try FileSystem.stat(path)
    return (Int(status.mtimeNanoseconds / 1_000_000_000), Int(status.mtimeNanoseconds % 1_000_000_000))
}

/// Overwrites one byte in place (inode and size unchanged), as disk rot or a
/// stray write would; works on read-only files because tests run as root or
/// make the file writable first.
func storeTestFlipByte(_ path: String, at offset: Int) throws {
    let mode = try FileSystem.stat(path).permissions
    try FileSystem.chmod(path, 0o644)
    let fd = try FileSystem.open(path, O_RDWR)
    defer { close(fd) }
    var byte: UInt8 = 0
    guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw StoreError.io(path, "pread", errno: errno) }
    byte ^= 0xff
    guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw StoreError.io(path, "pwrite", errno: errno) }
    try FileSystem.chmod(path, mode_t(mode))
}

/// Runs a command, returning its standard output.
func storeTestRun(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// A stage entry with the given outputs and otherwise fixed fields.
func storeTestEntry(key: String, outputs: [String: ArtifactRef]) -> StageEntry {
    StageEntry(
        key: key, stageType: "test/stage", stageVersion: 1, outputs: outputs, metrics: ["accuracy": .double(0.5)],
        createdAt: Date(timeIntervalSince1970: 1_700_000_000.25), wallSeconds: 1.5, cpuSeconds: 2.5,
        recipeName: "recipe", stageID: "stage", formatVersion: 1)
}

/// `FileManager.createFile` that throws instead of returning false.
func storeTestCreateFile(atPath path: String, contents: Data, attributes: [FileAttributeKey: Any]? = nil) throws {
    guard FileManager.default.createFile(atPath: path, contents: contents, attributes: attributes) else {
        throw StoreError(.io, path: path, "could not create test file")
    }
}
