import Foundation
import Glibc
import Testing

import SqueezeSupport

@Suite struct AtomicFileTests {
    @Test func writesCreatesParentsAndReplacesLeavingNoTemporaryFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/a/b/out.json"
        try AtomicFile.write(Data("first".utf8), to: path)
        try AtomicFile.write(Data("second".utf8), to: path)
        #expect(try FileSystem.readFile(path) == Array("second".utf8))
        #expect(try FileSystem.listDirectory(directory.path + "/a/b") == ["out.json"])
    }

    @Test func temporaryDirectoryAndModeAreHonoured() throws {
        let directory = try TemporaryDirectory()
        try FileSystem.makeDirectories(directory.path + "/tmp")
        let path = directory.path + "/object"
        try AtomicFile.write(Array("x".utf8), to: path, temporaryDirectory: directory.path + "/tmp", mode: 0o444)
        #expect(try FileSystem.stat(path).permissions == 0o444)
        #expect(try FileSystem.listDirectory(directory.path + "/tmp").isEmpty)
    }

    @Test func streamingWriterHashesWhatItWrote() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/data.bin"
        let writer = try AtomicFile.Writer(path: path, hashing: true)
        let chunks = (0..<5).map { index in [UInt8](repeating: UInt8(index), count: 100_000 + index) }
        for chunk in chunks { try writer.write(chunk) }
        try writer.write("tail")
        let digest = try writer.commit()
        #expect(digest == Hashing.sha256(chunks.flatMap { $0 } + Array("tail".utf8)))
        #expect(digest == (try Hashing.sha256(fileAt: path)))
        #expect(throws: StoreError.self) { try writer.write([1]) }
    }

    @Test func withoutHashingCommitReturnsNil() throws {
        let directory = try TemporaryDirectory()
        let writer = try AtomicFile.Writer(path: directory.path + "/plain")
        try writer.write("x")
        #expect(try writer.commit() == nil)
    }

    @Test func aWriterDroppedBeforeCommitLeavesTheTargetUntouched() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/kept"
        try AtomicFile.write(Data("old".utf8), to: path)
        do {
            let writer = try AtomicFile.Writer(path: path)
            try writer.write("new, but never committed")
        }
        #expect(try FileSystem.readFile(path) == Array("old".utf8))
        #expect(try FileSystem.listDirectory(directory.path) == ["kept"])
    }

    @Test func aMissingFolderIsAnIOErrorNamingThePath() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/missing/out"
        let error = try #require(throws: StoreError.self) {
            try AtomicFile.write(Array("x".utf8), to: path)
        }
        #expect(error.kind == .io)
        #expect(error.description.contains(directory.path + "/missing"))
    }
}
