import Foundation
import SqueezeSupport
import Glibc

/// The manifest of a directory artifact, stored as `trees/ab/<hex>.json`.
///
/// Canonical JSON, so equal directories give equal bytes and the directory's
/// digest is the SHA-256 of those bytes:
///
///     {"entries":[{"digest":"sha256:…","executable":false,"path":"a/b.txt","size":3,"type":"file"},
///                 {"path":"empty","type":"dir"}],"format":1}
///
/// Entries are sorted by the UTF-8 bytes of their `/`-separated relative path.
/// Files carry their content digest, size and owner-executable bit; only empty
/// directories are listed (others are implied by the files in them).
/// No white space, keys sorted, strings escaped minimally.
struct TreeManifest: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        case file(digest: Digest, size: Int64, executable: Bool)
        case emptyDirectory
    }

    struct Entry: Equatable, Sendable {
        var path: String
        var kind: Kind
    }

    static let formatVersion = 1

    /// Sorted by path bytes.
    let entries: [Entry]

    init(entries: [Entry]) {
        self.entries = entries.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
    }

    /// Sum of the file sizes.
    var totalSize: Int64 { entries.reduce(0) { if case .file(_, let size, _) = $1.kind { $0 + size } else { $0 } } }

    /// The distinct blobs the files need: digest and executable variant.
    var blobs: Set<BlobID> {
        Set(entries.compactMap { if case .file(let digest, _, let executable) = $0.kind { BlobID(digest: digest, executable: executable) } else { nil } })
    }

    var canonicalBytes: [UInt8] {
        var out = "{\"entries\":["
        for (index, entry) in entries.enumerated() {
            if index > 0 { out += "," }
            switch entry.kind {
            case .file(let digest, let size, let executable):
                out += "{\"digest\":\"\(digest)\",\"executable\":\(executable),\"path\":"
                JSONText.appendString(entry.path, to: &out)
                out += ",\"size\":\(size),\"type\":\"file\"}"
            case .emptyDirectory:
                out += "{\"path\":"
                JSONText.appendString(entry.path, to: &out)
                out += ",\"type\":\"dir\"}"
            }
        }
        out += "],\"format\":\(TreeManifest.formatVersion)}"
        return Array(out.utf8)
    }

    var digest: Digest { Hashing.sha256(canonicalBytes) }

    // MARK: Parsing stored manifests

    private struct Stored: Decodable {
        struct Item: Decodable {
            var path: String
            var type: String
            var digest: Digest?
            var size: Int64?
            var executable: Bool?
        }
        var format: Int
        var entries: [Item]
    }

    /// Parses and validates a stored manifest: known format, safe relative
    /// paths, no duplicates or file/directory clashes, and canonical bytes
    /// (re-encoding gives exactly `bytes`). Anything else is `.corrupt`.
    static func parse(_ bytes: [UInt8], origin: String) throws -> TreeManifest {
        let stored: Stored
        do {
            stored = try SqueezeJSON.decode(Stored.self, from: bytes)
        } catch {
            throw StoreError.corrupt(origin, "manifest is not valid JSON: \(error)")
        }
        guard stored.format == formatVersion else {
            throw StoreError.corrupt(origin, "manifest format \(stored.format) is not supported (expected \(formatVersion))")
        }
        var entries: [Entry] = []
        for item in stored.entries {
            guard isSafeRelativePath(item.path) else {
                throw StoreError.corrupt(origin, "manifest entry path `\(item.path)` is not a safe relative path")
            }
            switch item.type {
            case "file":
                guard let digest = item.digest, let size = item.size, size >= 0, let executable = item.executable else {
                    throw StoreError.corrupt(origin, "file entry `\(item.path)` lacks digest, size or executable")
                }
                entries.append(Entry(path: item.path, kind: .file(digest: digest, size: size, executable: executable)))
            case "dir":
                entries.append(Entry(path: item.path, kind: .emptyDirectory))
            default:
                throw StoreError.corrupt(origin, "entry `\(item.path)` has unknown type `\(item.type)`")
            }
        }
        let manifest = TreeManifest(entries: entries)
        try manifest.checkConsistency(origin: origin)
        guard manifest.canonicalBytes == bytes else {
            throw StoreError.corrupt(origin, "manifest is not in canonical form")
        }
        return manifest
    }

    /// No duplicate paths; no entry below a file; listed directories empty.
    private func checkConsistency(origin: String) throws {
        var seen: Set<[UInt8]> = []
        var parents: Set<[UInt8]> = []
        for entry in entries {
            let bytes = Array(entry.path.utf8)
            guard seen.insert(bytes).inserted else {
                throw StoreError.corrupt(origin, "manifest lists `\(entry.path)` twice")
            }
            var prefix: [UInt8] = []
            for component in bytes.split(separator: UInt8(ascii: "/")).dropLast() {
                if !prefix.isEmpty { prefix.append(UInt8(ascii: "/")) }
                prefix.append(contentsOf: component)
                parents.insert(prefix)
            }
        }
        for entry in entries where parents.contains(Array(entry.path.utf8)) {
            throw StoreError.corrupt(origin, "manifest entry `\(entry.path)` is also a parent of other entries")
        }
    }

    /// Non-empty `/`-separated components, none `.`, `..` or containing NUL.
    static func isSafeRelativePath(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.hasSuffix("/") else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy {
            !$0.isEmpty && $0 != "." && $0 != ".." && !$0.contains("\0")
        }
    }
}

/// One blob under `objects/`: the content digest, and whether it is the
/// executable (0555) variant `<hex>.x` that trees with executable files link to.
struct BlobID: Hashable, Sendable {
    var digest: Digest
    var executable: Bool

    var fileName: String { executable ? digest.hex + ".x" : digest.hex }

    /// Parses an `objects/ab/` file name.
    init?(fileName: String) {
        if fileName.hasSuffix(".x"), let digest = Digest(hex: String(fileName.dropLast(2))) {
            self.init(digest: digest, executable: true)
        } else if let digest = Digest(hex: fileName) {
            self.init(digest: digest, executable: false)
        } else {
            return nil
        }
    }

    init(digest: Digest, executable: Bool) {
        self.digest = digest
        self.executable = executable
    }
}

/// A recursive listing of a directory in manifest terms: regular files and
/// empty directories, with relative paths.
struct DirectoryListing {
    struct File {
        var relativePath: String
        var absolutePath: String
        var status: FileSystem.Status
    }

    var files: [File] = []
    var emptyDirectories: [String] = []

    /// Walks `root`. With `followSymlinks`, links are resolved (inputs);
    /// without, a symbolic link is an `.unsupported` error (artifacts).
    /// Sockets, FIFOs and devices are always `.unsupported`.
    init(root: String, followSymlinks: Bool) throws {
        var ancestors: [(UInt64, UInt64)] = []
        let rootStatus = followSymlinks ? try FileSystem.stat(root) : try FileSystem.lstat(root)
        try walk(directory: root, relative: "", status: rootStatus, followSymlinks: followSymlinks, ancestors: &ancestors)
    }

    private mutating func walk(
        directory: String, relative: String, status: FileSystem.Status, followSymlinks: Bool,
        ancestors: inout [(UInt64, UInt64)]
    ) throws {
        if ancestors.contains(where: { $0 == (status.device, status.inode) }) {
            throw StoreError.unsupported(directory, "symbolic links form a cycle")
        }
        ancestors.append((status.device, status.inode))
        defer { ancestors.removeLast() }
        let names = try FileSystem.listDirectory(directory)
        if names.isEmpty, !relative.isEmpty {
            emptyDirectories.append(relative)
        }
        for name in names {
            let absolute = directory + "/" + name
            let childRelative = relative.isEmpty ? name : relative + "/" + name
            let link = try FileSystem.lstat(absolute)
            var child = link
            if link.isSymbolicLink {
                guard followSymlinks else {
                    throw StoreError.unsupported(
                        absolute, "is a symbolic link; artifacts may contain only regular files and directories")
                }
                child = try FileSystem.stat(absolute)
            }
            if child.isRegularFile {
                files.append(File(relativePath: childRelative, absolutePath: absolute, status: child))
            } else if child.isDirectory {
                try walk(directory: absolute, relative: childRelative, status: child, followSymlinks: followSymlinks, ancestors: &ancestors)
            } else {
                throw StoreError.unsupported(
                    absolute, "is \(child.kindDescription); artifacts may contain only regular files and directories")
            }
        }
    }
}
