import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

#if canImport(Glibc)
import Glibc
#endif

/// A `source: {url, sha256, files}` parameter (`ParamType.download`): a file
/// fetched over HTTP(S), kept only when its SHA-256 is the pin, and unpacked
/// when it is a zip or tar archive. `Files` is what the stage reads inside
/// it (member paths by role; the stage's `check` validates its shape).
struct PinnedDownload<Files: Decodable & Sendable>: Decodable, Sendable {
    var url: String
    var sha256: String
    var files: Files?
}

/// A verified download, ready to read: the file itself, or the directory
/// its archive was unpacked into.
struct FetchedDownload: Sendable {
    /// The verified file, in the download area.
    var file: String
    /// Where the archive was unpacked, or nil for a plain file.
    var unpacked: String?
    /// The URL without credentials, for messages.
    var shownURL: String

    /// The absolute path of `member` inside the unpacked archive; a member
    /// that is absolute, climbs out with `..` or is missing is an error at
    /// `parameter`.
    func member(_ member: String, parameter: String) throws -> String {
        guard let unpacked else {
            throw StageFailure("\(shownURL) is not a zip or tar archive, so it has no member `\(member)`; leave `files` out to read the file itself", parameter: parameter)
        }
        guard ArchiveExtraction.isContained(member) else {
            throw StageFailure("`\(member)` is not a path inside the archive (absolute, or climbing out with `..`)", parameter: parameter)
        }
        let path = (unpacked as NSString).appendingPathComponent(member)
        guard FileManager.default.fileExists(atPath: path) else {
            let top = ((try? FileManager.default.contentsOfDirectory(atPath: unpacked)) ?? []).sorted().prefix(8)
            throw StageFailure(
                "the archive from \(shownURL) has no member `\(member)` (its top level holds: \(top.joined(separator: ", ")))",
                parameter: parameter)
        }
        return path
    }
}

enum PinnedDownloads {
    /// Fetches `url` into the download area (`<store>/downloads/<sha256>`),
    /// unless a verified copy is there already, and unpacks it into
    /// `scratch/unpacked` when it is an archive. Concurrent stages with the
    /// same pin wait for one another (a lock file beside the download), so
    /// the bytes cross the network once. An interrupted download leaves its
    /// `.partial` file in the area, and the next attempt asks for the rest.
    static func fetch(
        url text: String, sha256: String, parameter: String, context: StageContext, scratch: String
    ) async throws -> FetchedDownload {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil else {
            throw StageFailure("`\(text)` is not an http:// or https:// URL", parameter: parameter)
        }
        let shown = HTTPClient.redacted(url)
        guard let pin = Digest(hex: sha256.lowercased()) else {
            throw StageFailure("`sha256` must be 64 hex digits, got `\(sha256)`", parameter: parameter)
        }
        let area = context.downloadDirectory ?? (scratch as NSString).appendingPathComponent("downloads")
        if context.downloadDirectory == nil {
            context.log.line("no store download area: downloading into a temporary directory, removed afterwards")
        }
        try FileSystem.makeDirectories(area)
        let file = (area as NSString).appendingPathComponent(pin.hex)
        let lock = try await DownloadLock.acquire((area as NSString).appendingPathComponent(pin.hex + ".lock"))
        defer { lock.release() }

        if FileManager.default.fileExists(atPath: file) {
            if (try? Hashing.sha256(fileAt: file)) == pin {
                context.log.line("using \(shown) (sha256 \(pin.hex)), downloaded before: \(file)")
            } else {
                context.log.line("the kept copy of \(shown) in \(file) no longer has SHA-256 \(pin.hex); downloading it again")
                unlink(file)
            }
        }
        if !FileManager.default.fileExists(atPath: file) {
            let resumed = (try? FileSystem.lstatIfPresent(file + ".partial"))??.size ?? 0
            context.log.line(resumed > 0
                ? "resuming the download of \(shown) after \(resumed) bytes (sha256 \(pin.hex))"
                : "downloading \(shown) (sha256 \(pin.hex))")
            let progress = context.progress
            let started = Date()
            do {
                let fetched = try await HTTPClient().download(url, to: file, sha256: pin) { received, total in
                    let megabytes = String(format: "%.1f", Double(received) / 1e6)
                    let of = total.map { String(format: " of %.1f", Double($0) / 1e6) } ?? ""
                    progress.report(fraction: total.map { $0 > 0 ? Double(received) / Double($0) : 1 }, "downloading \(megabytes)\(of) MB")
                }
                context.log.line("downloaded \(fetched) bytes in \(String(format: "%.1f", Date().timeIntervalSince(started))) s, SHA-256 verified")
            } catch let error as HTTPError {
                if case .digestMismatch = error {
                    unlink(file + ".partial")
                    unlink(file + ".partial.etag")
                }
                throw StageFailure("cannot download the pinned file: \(error)", parameter: parameter)
            }
        }

        guard let kind = ArchiveExtraction.kind(ofFileAt: file) else {
            return FetchedDownload(file: file, unpacked: nil, shownURL: shown)
        }
        let unpacked = (scratch as NSString).appendingPathComponent("unpacked")
        context.progress.report(StageProgress(message: "unpacking the \(kind.rawValue) archive"))
        do {
            try await ArchiveExtraction.extract(file, kind: kind, into: unpacked)
        } catch let refusal as ArchiveExtraction.Refusal {
            throw StageFailure("the archive from \(shown): \(refusal)", parameter: parameter)
        }
        context.log.line("unpacked the \(kind.rawValue) archive into \(unpacked)")
        return FetchedDownload(file: file, unpacked: unpacked, shownURL: shown)
    }

    /// A fresh temporary directory for one stage execution's unpacked files.
    static func makeScratch(_ what: String) throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("squeeze-\(what)-\(UUID().uuidString)")
        try FileSystem.makeDirectories(path)
        return path
    }

    /// Recipe checks shared by the stages with a download parameter: a URL
    /// holding credentials would be written into run records, so they belong
    /// in ~/.netrc.
    static func check(_ with: YAMLNode, parameter: String) -> [Diagnostic] {
        guard let url = with[parameter]?["url"], let text = url.scalar, !text.contains("${"),
              let components = URLComponents(string: text), components.user != nil || components.password != nil else { return [] }
        return [Diagnostic(
            "the URL holds credentials, which would be written into run records", at: url.location,
            hint: "remove them from the URL and put them in ~/.netrc (or the file $NETRC names): `machine HOST login USER password SECRET`")]
    }
}

/// An exclusive `flock` on a lock file beside a download, taken without
/// blocking a thread (polled). The file is removed on release; a waiter that
/// locked a file already removed tries again, so two holders never meet.
final class DownloadLock: Sendable {
    private let descriptor: Int32
    private let path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    static func acquire(_ path: String) async throws -> DownloadLock {
        var wait: UInt64 = 5_000_000
        while true {
            try Task.checkCancellation()
            let fd = try FileSystem.open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o644)
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                // Still the file at `path`? (Its holder may have removed it before we locked it.)
                if let now = try? FileSystem.statIfPresent(path), let held = try? FileSystem.fstat(fd, path: path),
                   now.inode == held.inode, now.device == held.device {
                    return DownloadLock(descriptor: fd, path: path)
                }
                close(fd)
                continue
            }
            close(fd)
            try await Task.sleep(nanoseconds: wait)
            wait = min(wait * 2, 500_000_000)
        }
    }

    func release() {
        unlink(path)
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
