import Foundation
@testable import SqueezeEngine
import Testing

#if canImport(Glibc)
import Glibc
import SqueezeSupport
#endif

/// `OutputFile.write`, behind `squeeze report --html PATH`: what is at PATH
/// decides how it is written, and nothing but a regular file is ever replaced.
@Suite struct OutputFileTests {
    static func kind(_ path: String) throws -> String {
        try FileSystem.lstat(path).kindDescription
    }

    static func failure(writing path: String) -> String? {
        do {
            try OutputFile.write(Data("page".utf8), to: path)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func createsOrReplacesARegularFile() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let path = workspace.path("report.html")
        try OutputFile.write(Data("first".utf8), to: path)
        try OutputFile.write(Data("second".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second")
        #expect(try FileSystem.listDirectory(workspace.root) == ["report.html"], "no temporary file is left behind")
    }

    @Test func writesWhereASymbolicLinkPointsAndKeepsTheLink() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try FileManager.default.createDirectory(atPath: workspace.path("site"), withIntermediateDirectories: false)
        try workspace.write("site/page.html", "old")
        try FileManager.default.createSymbolicLink(atPath: workspace.path("link.html"), withDestinationPath: "site/page.html")
        try FileManager.default.createSymbolicLink(atPath: workspace.path("fresh.html"), withDestinationPath: "site/new.html")

        try OutputFile.write(Data("new".utf8), to: workspace.path("link.html"))
        #expect(try Self.kind(workspace.path("link.html")) == "a symbolic link")
        #expect(try String(contentsOfFile: workspace.path("site/page.html"), encoding: .utf8) == "new")

        // A link to a file that does not exist yet creates that file.
        try OutputFile.write(Data("created".utf8), to: workspace.path("fresh.html"))
        #expect(try Self.kind(workspace.path("fresh.html")) == "a symbolic link")
        #expect(try String(contentsOfFile: workspace.path("site/new.html"), encoding: .utf8) == "created")
    }

    @Test(.timeLimit(.minutes(1)))
    func writesThroughAFIFOWithoutReplacingIt() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let fifo = workspace.path("pipe")
        #expect(mkfifo(fifo, 0o644) == 0)
        let reader = Task.detached { FileHandle(forReadingAtPath: fifo)?.readDataToEndOfFile() }
        try OutputFile.write(Data("through the pipe".utf8), to: fifo)
        #expect(await reader.value.map { String(decoding: $0, as: UTF8.self) } == "through the pipe")
        #expect(try Self.kind(fifo) == "a FIFO")
    }

    @Test func writesThroughACharacterDevice() throws {
        try OutputFile.write(Data("discarded".utf8), to: "/dev/null")
        #expect(try Self.kind("/dev/null") == "a character device")
        if FileManager.default.fileExists(atPath: "/dev/full") {
            let failure = try #require(Self.failure(writing: "/dev/full"), "/dev/full refuses every write")
            #expect(failure.contains("No space left on device"), "\(failure)")
            #expect(try Self.kind("/dev/full") == "a character device")
        }
    }

    @Test func aMissingFolderIsAnErrorAndIsNotCreated() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let failure = try #require(Self.failure(writing: workspace.path("missing/deeper/report.html")))
        #expect(failure.contains("the folder \(workspace.path("missing/deeper")) does not exist; create it first"), "\(failure)")
        #expect(!FileManager.default.fileExists(atPath: workspace.path("missing")))
    }

    @Test func refusesDirectoriesAndPathsThroughAFile() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let directory = try #require(Self.failure(writing: workspace.root))
        #expect(directory.contains("it is a directory"), "\(directory)")
        try workspace.write("plain.txt", "x")
        let throughFile = try #require(Self.failure(writing: workspace.path("plain.txt/report.html")))
        #expect(throughFile.contains("is a regular file, not a folder"), "\(throughFile)")
        #expect(try String(contentsOfFile: workspace.path("plain.txt"), encoding: .utf8) == "x")
    }
}
