import Foundation
import SqueezeSupport
import Testing
import ZIPFoundation

/// Unpacking downloaded archives: zip (ZIPFoundation) and tar (the `tar`
/// program), and the refusal of members that would land outside.
@Suite struct ArchiveExtractionTests {
    enum Member {
        case file(String, String)
        case directory(String)
        case link(String, to: String)
    }

    /// A zip holding `members`, written as given (no path checks on writing).
    static func zip(_ members: [Member], at path: String) throws {
        let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .create)
        for member in members {
            switch member {
            case .file(let name, let text):
                let data = Data(text.utf8)
                try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            case .directory(let name):
                try archive.addEntry(with: name, type: .directory, uncompressedSize: Int64(0)) { _, _ in Data() }
            case .link(let name, let target):
                let data = Data(target.utf8)
                try archive.addEntry(with: name, type: .symlink, uncompressedSize: Int64(data.count)) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        }
    }

    /// Runs `tar` with `arguments` in `directory`.
    static func tar(_ arguments: [String], in directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["tar"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "tar \(arguments) failed")
    }

    static func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "archive-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func text(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func aZipUnpacksWithItsDirectoriesAndInsideLinks() async throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.zip([
            .directory("data/"), .file("data/train.tsv", "sentence\tlabel\ngood\t1\n"), .file("data/sub/test.tsv", "x\t0\n"),
            .link("data/alias.tsv", to: "train.tsv"),
        ], at: root + "/a.zip")
        #expect(ArchiveExtraction.kind(ofFileAt: root + "/a.zip") == .zip)
        try await ArchiveExtraction.extract(root + "/a.zip", kind: .zip, into: root + "/out")
        #expect(Self.text(root + "/out/data/train.tsv") == "sentence\tlabel\ngood\t1\n")
        #expect(Self.text(root + "/out/data/sub/test.tsv") == "x\t0\n")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/out/data/alias.tsv") == "train.tsv")
        #expect(Self.text(root + "/out/data/alias.tsv") == "sentence\tlabel\ngood\t1\n")
    }

    @Test func aTarGzUnpacks() async throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/src/SST-2", withIntermediateDirectories: true)
        try Data("sentence\tlabel\nfine\t1\n".utf8).write(to: URL(fileURLWithPath: root + "/src/SST-2/train.tsv"))
        try Self.tar(["-czf", root + "/a.tar.gz", "SST-2"], in: root + "/src")
        try Self.tar(["-cf", root + "/a.tar", "SST-2"], in: root + "/src")
        #expect(ArchiveExtraction.kind(ofFileAt: root + "/a.tar.gz") == .tar)
        #expect(ArchiveExtraction.kind(ofFileAt: root + "/a.tar") == .tar)
        try await ArchiveExtraction.extract(root + "/a.tar.gz", kind: .tar, into: root + "/out")
        #expect(Self.text(root + "/out/SST-2/train.tsv") == "sentence\tlabel\nfine\t1\n")
        try await ArchiveExtraction.extract(root + "/a.tar", kind: .tar, into: root + "/out2")
        #expect(Self.text(root + "/out2/SST-2/train.tsv") == "sentence\tlabel\nfine\t1\n")
    }

    @Test func aPlainFileIsNoArchive() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Data("sentence\tlabel\n".utf8).write(to: URL(fileURLWithPath: root + "/train.tsv"))
        #expect(ArchiveExtraction.kind(ofFileAt: root + "/train.tsv") == nil)
    }

    @Test(arguments: [
        [Member.file("../evil.txt", "x")],
        [Member.file("ok.txt", "x"), Member.file("a/../../evil.txt", "x")],
        [Member.file("/tmp/squeeze-evil-\(UUID().uuidString).txt", "x")],
        [Member.link("link", to: "/etc/passwd")],
        [Member.link("link", to: "../outside")],
        [Member.link("link", to: "a/../../outside"), Member.file("link/evil.txt", "x")],
    ])
    func aZipThatWouldWriteOutsideIsRefused(_ members: [Member]) async throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/deep/er", withIntermediateDirectories: true)
        try Self.zip(members, at: root + "/evil.zip")
        let target = root + "/deep/er/out"
        await #expect(throws: ArchiveExtraction.Refusal.self) {
            try await ArchiveExtraction.extract(root + "/evil.zip", kind: .zip, into: target)
        }
        #expect(!FileManager.default.fileExists(atPath: target), "a refused archive leaves nothing")
        #expect(!FileManager.default.fileExists(atPath: root + "/deep/er/evil.txt"))
        #expect(!FileManager.default.fileExists(atPath: root + "/deep/evil.txt"))
        for member in members {
            if case .file(let name, _) = member, name.hasPrefix("/") { #expect(!FileManager.default.fileExists(atPath: name)) }
        }
    }

    @Test func aTarWithAMemberClimbingOutIsRefused() async throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/src/in", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: root + "/src/evil.txt"))
        // -P keeps `../` in the member name.
        try Self.tar(["-cPf", root + "/evil.tar", "../evil.txt"], in: root + "/src/in")
        try FileManager.default.createDirectory(atPath: root + "/x/y", withIntermediateDirectories: true)
        await #expect(throws: ArchiveExtraction.Refusal.self) {
            try await ArchiveExtraction.extract(root + "/evil.tar", kind: .tar, into: root + "/x/y/out")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/x/y/out"))
        #expect(!FileManager.default.fileExists(atPath: root + "/x/y/evil.txt"))
    }

    @Test func aTarWithALinkOutsideIsRefused() async throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/src/config.json", withDestinationPath: "/etc/passwd")
        try Self.tar(["-czf", root + "/evil.tar.gz", "config.json"], in: root + "/src")
        await #expect(throws: ArchiveExtraction.Refusal.self) {
            try await ArchiveExtraction.extract(root + "/evil.tar.gz", kind: .tar, into: root + "/out")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/out"))
    }

    @Test func containedPaths() {
        #expect(ArchiveExtraction.isContained("SST-2/train.tsv"))
        #expect(ArchiveExtraction.isContained("a/./b"))
        #expect(ArchiveExtraction.isContained("a..b/c"))
        #expect(!ArchiveExtraction.isContained(""))
        #expect(!ArchiveExtraction.isContained("/etc/passwd"))
        #expect(!ArchiveExtraction.isContained(".."))
        #expect(!ArchiveExtraction.isContained("a/../../b"))
        #expect(!ArchiveExtraction.isContained("a/.."))
    }
}
