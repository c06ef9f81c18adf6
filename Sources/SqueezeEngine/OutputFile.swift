import Foundation
import Glibc
import SqueezeSupport

/// Writes a file the user named on the command line (`report --html PATH`),
/// never replacing something that is not a regular file:
///
/// - nothing or a regular file at PATH: written atomically (`AtomicFile`);
/// - a symbolic link: the file it points to is written (or created) by these
///   same rules, and the link stays a link;
/// - a FIFO or a character device (`/dev/stdout`, a named pipe): written
///   through, opened for writing without creating or renaming anything;
/// - a directory, socket or block device: refused.
///
/// A folder in PATH that does not exist is an error: the file is where the
/// user said, or nowhere.
public enum OutputFile {
    /// Why PATH could not be written, in a sentence that says what to do.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func write(_ data: Data, to path: String) throws(Failure) {
        let target: String
        let status: FileSystem.Status?
        do {
            target = try resolvingLink(path)
            status = try FileSystem.lstatIfPresent(target)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "cannot write \(path): \(error)")
        }
        switch status.map({ $0.fileType }) {
        case nil, UInt32(S_IFREG):
            let directory = FileSystem.parent(of: target)
            try requireDirectory(directory, for: path)
            do {
                try AtomicFile.write(Array(data), to: target)
            } catch {
                throw Failure(description: "cannot write \(path): \(error)")
            }
        case UInt32(S_IFIFO), UInt32(S_IFCHR):
            do {
                let fd = try FileSystem.open(target, O_WRONLY)
                defer { close(fd) }
                try data.withUnsafeBytes { try FileSystem.writeAll(fd, $0, path: target) }
            } catch {
                throw Failure(description: "cannot write \(path): \(error)")
            }
        default:
            let kind = status?.kindDescription ?? "not a file"
            throw Failure(description: "cannot write \(path): it is \(kind); give the path of a file to create or replace")
        }
    }

    /// `path`, or the file its chain of symbolic links ends at.
    private static func resolvingLink(_ path: String) throws -> String {
        var current = path
        for _ in 0..<40 {
            guard let status = try FileSystem.lstatIfPresent(current), status.isSymbolicLink else { return current }
            let destination = try FileManager.default.destinationOfSymbolicLink(atPath: current)
            current = destination.hasPrefix("/") ? destination : FileSystem.parent(of: current) + "/" + destination
        }
        throw Failure(description: "cannot write \(path): too many levels of symbolic links")
    }

    /// The folder a new file goes in must exist already.
    private static func requireDirectory(_ directory: String, for path: String) throws(Failure) {
        let status: FileSystem.Status?
        do {
            status = try FileSystem.statIfPresent(directory)
        } catch {
            throw Failure(description: "cannot write \(path): \(error)")
        }
        guard let status else {
            throw Failure(description: "cannot write \(path): the folder \(directory) does not exist; create it first")
        }
        guard status.isDirectory else {
            throw Failure(description: "cannot write \(path): \(directory) is \(status.kindDescription), not a folder")
        }
    }
}
