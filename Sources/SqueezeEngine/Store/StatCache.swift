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
        guard let file = try? JSONDecoder().decode(StatCacheFile.self, from: Data(bytes)) else {
            return .unusable("not a valid stat cache")
        }
        guard file.format == formatVersion else {
            return .unusable("format \(file.format) is not supported (expected \(formatVersion))")
        }
        return .loaded(file.entries)
    }

    func encoded() throws -> [UInt8] {
        Array(try SqueezeJSON.encoder(pretty: false).encode(self))
    }
}
