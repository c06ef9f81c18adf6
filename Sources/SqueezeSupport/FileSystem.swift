import Foundation

import Glibc

// File-scope so that `stat` names the function, not the struct or the methods below.
private func systemStat(_ path: String, _ buffer: inout stat) -> Int32 { stat(path, &buffer) }
private func systemLstat(_ path: String, _ buffer: inout stat) -> Int32 { lstat(path, &buffer) }
private func systemFstat(_ fd: Int32, _ buffer: inout stat) -> Int32 { fstat(fd, &buffer) }

/// Thin wrappers over the POSIX calls Squeeze needs (the store above all),
/// throwing `StoreError` with the path and `errno` text. Foundation's
/// `FileManager` hides inode, device, nanosecond mtimes and link semantics,
/// which the store relies on. Whole-file writes are `AtomicFile`'s.
package enum FileSystem {
    /// The `stat` fields the store looks at.
    package struct Status: Equatable {
        package var mode: UInt32
        package var size: Int64
        package var mtimeNanoseconds: Int64
        package var inode: UInt64
        package var device: UInt64
        package var linkCount: UInt64

        package init(_ s: stat) {
            mode = UInt32(s.st_mode)
            size = Int64(s.st_size)
            mtimeNanoseconds = Int64(s.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(s.st_mtim.tv_nsec)
            inode = UInt64(s.st_ino)
            device = UInt64(s.st_dev)
            linkCount = UInt64(s.st_nlink)
        }

        package var fileType: UInt32 { mode & UInt32(S_IFMT) }
        package var isRegularFile: Bool { fileType == UInt32(S_IFREG) }
        package var isDirectory: Bool { fileType == UInt32(S_IFDIR) }
        package var isSymbolicLink: Bool { fileType == UInt32(S_IFLNK) }
        package var isOwnerExecutable: Bool { mode & UInt32(S_IXUSR) != 0 }
        package var permissions: UInt32 { mode & 0o7777 }

        /// Same file object (hard links share it).
        package func isSameFile(as other: Status) -> Bool { inode == other.inode && device == other.device }

        /// "a FIFO", "a socket"... for error messages.
        package var kindDescription: String {
            switch fileType {
            case UInt32(S_IFREG): "a regular file"
            case UInt32(S_IFDIR): "a directory"
            case UInt32(S_IFLNK): "a symbolic link"
            case UInt32(S_IFIFO): "a FIFO"
            case UInt32(S_IFSOCK): "a socket"
            case UInt32(S_IFCHR): "a character device"
            case UInt32(S_IFBLK): "a block device"
            default: "an unknown kind of file"
            }
        }
    }

    package static func lstat(_ path: String) throws -> Status {
        var s = Glibc.stat()
        guard systemLstat(path, &s) == 0 else { throw StoreError.io(path, "lstat", errno: errno) }
        return Status(s)
    }

    package static func stat(_ path: String) throws -> Status {
        var s = Glibc.stat()
        guard systemStat(path, &s) == 0 else { throw StoreError.io(path, "stat", errno: errno) }
        return Status(s)
    }

    /// `lstat`, or nil when nothing exists at `path`.
    package static func lstatIfPresent(_ path: String) throws -> Status? {
        var s = Glibc.stat()
        if systemLstat(path, &s) == 0 { return Status(s) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw StoreError.io(path, "lstat", errno: errno)
    }

    /// `stat` (following links), or nil when nothing exists at `path`.
    package static func statIfPresent(_ path: String) throws -> Status? {
        var s = Glibc.stat()
        if systemStat(path, &s) == 0 { return Status(s) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw StoreError.io(path, "stat", errno: errno)
    }

    package static func fstat(_ fd: Int32, path: String) throws -> Status {
        var s = Glibc.stat()
        guard systemFstat(fd, &s) == 0 else { throw StoreError.io(path, "fstat", errno: errno) }
        return Status(s)
    }

    package static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw StoreError.io(path, "open", errno: errno) }
        }
    }

    /// `open`, or nil when the file does not exist.
    package static func openIfPresent(_ path: String, _ flags: Int32) throws -> Int32? {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC)
            if fd >= 0 { return fd }
            if errno == ENOENT { return nil }
            if errno != EINTR { throw StoreError.io(path, "open", errno: errno) }
        }
    }

    package static func fsync(_ fd: Int32, path: String) throws {
        guard Glibc.fsync(fd) == 0 else { throw StoreError.io(path, "fsync", errno: errno) }
    }

    /// Flushes a file's data to disk.
    package static func fsyncFile(_ path: String) throws {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// Makes a directory's entries (new names, renames, unlinks) durable.
    /// A filesystem that cannot sync directories (`EINVAL`) has nothing more
    /// to make durable and is not an error.
    package static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 || errno == EINVAL else { throw StoreError.io(path, "fsync", errno: errno) }
    }

    /// Reads a whole (small) file.
    package static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        return try readAll(fd, path: path)
    }

    /// Reads a whole file, or nil when it does not exist.
    package static func readFileIfPresent(_ path: String) throws -> [UInt8]? {
        guard let fd = try openIfPresent(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        return try readAll(fd, path: path)
    }

    private static func readAll(_ fd: Int32, path: String) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                result.append(contentsOf: chunk[0..<count])
            } else if count == 0 {
                return result
            } else if errno != EINTR {
                throw StoreError.io(path, "read", errno: errno)
            }
        }
    }

    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0, errno != EINTR {
                throw StoreError.io(path, "write", errno: errno)
            }
        }
    }

    /// Copies the bytes of the file `source` into a new file `destination`
    /// (which must not exist), streaming; with `durable`, fsyncs it.
    package static func copyFile(_ source: String, to destination: String, durable: Bool = false) throws {
        let input = try open(source, O_RDONLY)
        defer { close(input) }
        let output = try open(destination, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        defer { close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(input, buffer.baseAddress, buffer.count)
            if count > 0 {
                try writeAll(output, UnsafeRawBufferPointer(rebasing: buffer[0..<count]), path: destination)
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw StoreError.io(source, "read", errno: errno)
            }
        }
        if durable { try fsync(output, path: destination) }
    }

    package static func rename(_ source: String, to destination: String) throws {
        guard Glibc.rename(source, destination) == 0 else {
            throw StoreError.io(source, "rename to \(destination)", errno: errno)
        }
    }

    /// Renames a directory; false (nothing changed) when a non-empty
    /// directory already has the destination name.
    package static func renameDirectory(_ source: String, to destination: String) throws -> Bool {
        if Glibc.rename(source, destination) == 0 { return true }
        if errno == EEXIST || errno == ENOTEMPTY { return false }
        throw StoreError.io(source, "rename to \(destination)", errno: errno)
    }

    /// Outcome of `link`, for the cases callers handle.
    package enum LinkResult { case linked, exists, crossDevice, tooManyLinks }

    /// Creates a hard link; "already exists", "other filesystem" and "too
    /// many links" are reported rather than thrown.
    package static func link(_ source: String, to destination: String) throws -> LinkResult {
        if Glibc.link(source, destination) == 0 { return .linked }
        switch errno {
        case EEXIST: return .exists
        case EXDEV: return .crossDevice
        case EMLINK: return .tooManyLinks
        default: throw StoreError.io(source, "link to \(destination)", errno: errno)
        }
    }

    /// Removes a file; a missing file is not an error.
    package static func removeFile(_ path: String) throws {
        guard Glibc.unlink(path) == 0 || errno == ENOENT else { throw StoreError.io(path, "unlink", errno: errno) }
    }

    package static func chmod(_ path: String, _ mode: mode_t) throws {
        guard Glibc.chmod(path, mode) == 0 else { throw StoreError.io(path, "chmod", errno: errno) }
    }

    /// Creates a directory; returns false if one already exists there.
    @discardableResult
    package static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws -> Bool {
        if mkdir(path, mode) == 0 { return true }
        if errno == EEXIST, (try? lstat(path))?.isDirectory == true { return false }
        throw StoreError.io(path, "mkdir", errno: errno)
    }

    /// `mkdir -p`.
    package static func makeDirectories(_ path: String) throws {
        if (try lstatIfPresent(path))?.isDirectory == true { return }
        let up = parent(of: path)
        if up != path, !up.isEmpty { try makeDirectories(up) }
        try makeDirectory(path)
    }

    /// The names in a directory except `.` and `..`, unsorted. A name that is
    /// not valid UTF-8 is an `.unsupported` error: the store's manifests are JSON.
    package static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw StoreError.io(path, "opendir", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw StoreError.io(path, "readdir", errno: errno) }
                return names
            }
            let bytes: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if bytes == [UInt8(ascii: ".")] || bytes == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            guard let name = String(validating: bytes, as: UTF8.self) else {
                let shown = String(decoding: bytes, as: UTF8.self)
                throw StoreError.unsupported(path + "/" + shown, "file name is not valid UTF-8")
            }
            names.append(name)
        }
    }

    /// `rm -rf`, making read-only directories writable first. Missing is fine.
    /// Works on raw name bytes, so names that are not UTF-8 are removed too.
    package static func removeTree(_ path: String) throws {
        guard let status = try lstatIfPresent(path) else { return }
        guard status.isDirectory else { return try removeFile(path) }
        if status.permissions & 0o700 != 0o700 { try chmod(path, mode_t(status.permissions | 0o700)) }
        let fd = try open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        try removeContents(ofDirectory: fd, path: path)
        guard rmdir(path) == 0 || errno == ENOENT else { throw StoreError.io(path, "rmdir", errno: errno) }
    }

    /// Empties the directory open as `fd` and closes `fd`.
    private static func removeContents(ofDirectory fd: Int32, path: String) throws {
        guard let dir = fdopendir(fd) else {
            let code = errno
            close(fd)
            throw StoreError.io(path, "fdopendir", errno: code)
        }
        defer { closedir(dir) }
        var names: [[CChar]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw StoreError.io(path, "readdir", errno: errno) }
                break
            }
            let name: [CChar] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                raw.prefix { $0 != 0 }.map { CChar(bitPattern: $0) }
            }
            if name == [46] || name == [46, 46] { continue }
            names.append(name + [0])
        }
        let dirFD = dirfd(dir)
        for name in names {
            let shown = path + "/" + String(decoding: name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var s = Glibc.stat()
            if fstatat(dirFD, name, &s, AT_SYMLINK_NOFOLLOW) != 0 {
                if errno == ENOENT { continue }
                throw StoreError.io(shown, "lstat", errno: errno)
            }
            let child = Status(s)
            if child.isDirectory {
                if child.permissions & 0o700 != 0o700 {
                    guard fchmodat(dirFD, name, mode_t(child.permissions | 0o700), 0) == 0 else {
                        throw StoreError.io(shown, "chmod", errno: errno)
                    }
                }
                let childFD = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard childFD >= 0 else { throw StoreError.io(shown, "open", errno: errno) }
                try removeContents(ofDirectory: childFD, path: shown)
                guard unlinkat(dirFD, name, AT_REMOVEDIR) == 0 || errno == ENOENT else {
                    throw StoreError.io(shown, "rmdir", errno: errno)
                }
            } else {
                guard unlinkat(dirFD, name, 0) == 0 || errno == ENOENT else {
                    throw StoreError.io(shown, "unlink", errno: errno)
                }
            }
        }
    }

    /// The directory part of a path ("/a/b" → "/a", "/a" → "/").
    package static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// An absolute, `/`-normalised form of `path` (relative to the working
    /// directory), without resolving symbolic links.
    package static func absolute(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// 16 random hex characters for unique temporary names.
    package static func randomSuffix() -> String {
        String(UInt64.random(in: .min ... .max), radix: 16)
    }

    /// Wall-clock time in nanoseconds since 1970, comparable with mtimes.
    package static func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}
