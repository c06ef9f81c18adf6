import Foundation
import SqueezeSupport

/// What was known about a file when it was last hashed. The record is
/// self-validating: it is trusted only while the file's current size, mtime,
/// inode and device are exactly these.
struct StatRecord: Codable, Equatable, Sendable {
    var size: Int64
    /// Modification time in nanoseconds since 1970.
    var mtime: Int64
    var inode: UInt64
    var device: UInt64
    var digest: Digest

    init(status: FileSystem.Status, digest: Digest) {
        size = status.size
        mtime = status.mtimeNanoseconds
        inode = status.inode
        device = status.device
        self.digest = digest
    }

    func matches(_ status: FileSystem.Status) -> Bool {
        size == status.size && mtime == status.mtimeNanoseconds && inode == status.inode && device == status.device
    }

    private enum CodingKeys: String, CodingKey {
        case size, mtime, inode, device, digest
    }

    /// Inode and device numbers are stored as the signed integers with their
    /// bits: a JSON value holds integers up to `Int.max` only, and overlay file
    /// systems set the top bit of inode numbers. Below 2^63 (every record
    /// written before) both forms are the same number.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        size = try container.decode(Int64.self, forKey: .size)
        mtime = try container.decode(Int64.self, forKey: .mtime)
        inode = UInt64(bitPattern: try container.decode(Int64.self, forKey: .inode))
        device = UInt64(bitPattern: try container.decode(Int64.self, forKey: .device))
        digest = try container.decode(Digest.self, forKey: .digest)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(size, forKey: .size)
        try container.encode(mtime, forKey: .mtime)
        try container.encode(Int64(bitPattern: inode), forKey: .inode)
        try container.encode(Int64(bitPattern: device), forKey: .device)
        try container.encode(digest, forKey: .digest)
    }
}

/// `statcache.json`: absolute path → `StatRecord`.
///
/// It serves two purposes: unchanged inputs are not re-hashed, and a stored
/// object whose record still matches counts as verified.
struct StatCacheFile: Codable {
    static let formatVersion = 1

    var format: Int
    var entries: [String: StatRecord]

    init(entries: [String: StatRecord]) {
        self.format = StatCacheFile.formatVersion
        self.entries = entries
    }

    enum LoadResult {
        case missing
        case loaded([String: StatRecord])
        /// Unreadable or of another format; the reason is for a warning.
        case unusable(String)
    }

    static func load(from path: String) -> LoadResult {
        let bytes: [UInt8]
        do {
            guard let read = try FileSystem.readFileIfPresent(path) else { return .missing }
            bytes = read
        } catch {
            return .unusable("\(error)")
        }
        guard let file = try? SqueezeJSON.decode(StatCacheFile.self, from: bytes) else {
            return .unusable("not a valid stat cache")
        }
        guard file.format == formatVersion else {
            return .unusable("format \(file.format) is not supported (expected \(formatVersion))")
        }
        return .loaded(file.entries)
    }

    func encoded() throws -> [UInt8] {
        try SqueezeJSON.encode(self, pretty: false)
    }
}
