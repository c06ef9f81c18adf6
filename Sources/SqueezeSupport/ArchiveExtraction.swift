import Foundation
import ZIPFoundation

#if canImport(Glibc)
import Glibc
#endif

/// Unpacks a downloaded zip or tar (plain, gzip, bzip2 or xz) into an empty
/// directory, never writing outside it: a member whose path is absolute or
/// has a `..` component, a link whose target is absolute or has a `..`
/// component, and any member that is not a file, directory or link are
/// refused, and the directory is removed. Zip archives are read with
/// ZIPFoundation, tar archives by `tar` as a child process (an argument
/// vector, no shell).
package enum ArchiveExtraction {
    package enum Kind: String, Equatable, Sendable {
        case zip
        case tar
    }

    /// An archive that could not, or must not, be unpacked.
    package struct Refusal: Error, CustomStringConvertible, Equatable {
        package var description: String
        package init(_ description: String) { self.description = description }
    }

    /// The kind of archive at `path`, from its first bytes (never its name:
    /// a mirror may call it anything), or nil for a plain file.
    package static func kind(ofFileAt path: String) -> Kind? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 512)) ?? Data())
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .zip }
        // gzip, bzip2, xz: compressed; only tar archives are accepted compressed.
        if head.starts(with: [0x1F, 0x8B]) || head.starts(with: [0x42, 0x5A, 0x68])
            || head.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .tar }
        if head.count >= 262, Array(head[257..<262]) == Array("ustar".utf8) { return .tar }
        return nil
    }

    /// Whether a member path or link target stays below the directory it is
    /// relative to: not absolute, no `..` component, not empty.
    package static func isContained(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\0") else { return false }
        return !path.split(separator: "/", omittingEmptySubsequences: true).contains("..")
    }

    /// Unpacks `archive` (of `kind`) into `directory`, which must not exist
    /// yet. On a refusal or failure nothing is left at `directory`.
    package static func extract(_ archive: String, kind: Kind, into directory: String, timeout: Double = 3600) async throws {
        try FileSystem.makeDirectories(FileSystem.parent(of: directory))
        guard try FileSystem.makeDirectory(directory) else {
            throw Refusal("cannot unpack into \(directory): it exists already")
        }
        do {
            switch kind {
            case .zip: try extractZip(archive, into: directory)
            case .tar: try await extractTar(archive, into: directory, timeout: timeout)
            }
            try checkTree(directory)
        } catch {
            try? FileSystem.removeTree(directory)
            throw error
        }
    }

    // MARK: - zip

    private static func extractZip(_ path: String, into directory: String) throws {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw Refusal("\((path as NSString).lastPathComponent) is not a readable zip archive: \(error)")
        }
        let root = URL(fileURLWithPath: directory)
        // Check every member before writing any.
        for entry in archive {
            guard isContained(entry.path) else {
                throw Refusal("the archive member `\(entry.path)` would be written outside the directory it is unpacked into; refused")
            }
            if entry.type == .symlink {
                var target = Data()
                _ = try archive.extract(entry, skipCRC32: false) { target.append($0) }
                let text = String(decoding: target, as: UTF8.self)
                guard isContained(text) else {
                    throw Refusal("the archive member `\(entry.path)` is a link to `\(text)`, outside the directory it is unpacked into; refused")
                }
            }
        }
        for entry in archive {
            let destination = root.appendingPathComponent(entry.path)
            do {
                _ = try archive.extract(entry, to: destination, skipCRC32: false)
            } catch {
                throw Refusal("cannot unpack `\(entry.path)` of \((path as NSString).lastPathComponent): \(error)")
            }
        }
    }

    // MARK: - tar

    private static func extractTar(_ path: String, into directory: String, timeout: Double) async throws {
        let candidates: [String] = ["/usr/bin/tar", "/bin/tar", "/usr/local/bin/tar"]
        guard let tar = candidates.first(where: { path in access(path, X_OK) == 0 }) else {
            throw Refusal("unpacking a tar archive needs `tar`, which is not installed")
        }
        let log = directory + ".tar.log"
        defer { unlink(log) }
        // List first: refuse before anything is written.
        let listing = directory + ".tar.list"
        defer { unlink(listing) }
        let listed = try await ChildProcess.run(
            executable: tar, arguments: [tar, "--list", "--file", path], environment: ["LC_ALL": "C"],
            workingDirectory: FileSystem.parent(of: directory), logPath: listing, timeout: timeout)
        guard listed.status == ChildProcess.Status.exited(0) else {
            throw Refusal("\((path as NSString).lastPathComponent) is not a readable tar archive: \(lastLine(of: listing))")
        }
        let names = String(decoding: (try? FileSystem.readFile(listing)) ?? [], as: UTF8.self).split(separator: "\n").map(String.init)
        if let bad = names.first(where: { !isContained($0) }) {
            throw Refusal("the archive member `\(bad)` would be written outside the directory it is unpacked into; refused")
        }
        let extracted = try await ChildProcess.run(
            executable: tar,
            arguments: [tar, "--extract", "--file", path, "--directory", directory, "--no-same-owner", "--no-same-permissions", "--delay-directory-restore"],
            environment: ["LC_ALL": "C"], workingDirectory: directory, logPath: log, timeout: timeout)
        guard extracted.status == ChildProcess.Status.exited(0) else {
            throw Refusal("unpacking \((path as NSString).lastPathComponent) failed: \(lastLine(of: log))")
        }
    }

    private static func lastLine(of path: String) -> String {
        let text = String(decoding: (try? FileSystem.readFile(path)) ?? [], as: UTF8.self)
        return text.split(separator: "\n").last.map(String.init) ?? "no output"
    }

    // MARK: - after unpacking

    /// Refuses a tree holding anything but files, directories and links that
    /// stay inside it (tar writes links as the archive says).
    private static func checkTree(_ directory: String) throws {
        guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return }
        while let relative = enumerator.nextObject() as? String {
            let path = (directory as NSString).appendingPathComponent(relative)
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            switch attributes[.type] as? FileAttributeType {
            case .typeRegular?, .typeDirectory?:
                continue
            case .typeSymbolicLink?:
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: path)
                guard isContained(target) else {
                    throw Refusal("the archive member `\(relative)` is a link to `\(target)`, outside the directory it is unpacked into; refused")
                }
            default:
                throw Refusal("the archive member `\(relative)` is neither a file, a directory nor a link; refused")
            }
        }
    }
}
