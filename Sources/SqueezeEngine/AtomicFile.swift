import Foundation

/// Whole-file writes that a crash can never leave half done: a temporary file
/// beside the target is written, fsynced and renamed over it, and the
/// directory is fsynced (the store's own primitive, for files outside it).
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileSystem.writeAtomically(Array(data), to: path, temporaryDirectory: directory)
    }
}
