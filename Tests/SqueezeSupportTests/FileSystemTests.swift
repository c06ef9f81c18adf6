import Foundation
import Glibc
import Testing

import SqueezeSupport

@Suite struct FileSystemTests {
    @Test func parentAndAbsolute() {
        #expect(FileSystem.parent(of: "/a/b") == "/a")
        #expect(FileSystem.parent(of: "/a") == "/")
        #expect(FileSystem.parent(of: "a") == ".")
        #expect(FileSystem.absolute("/a/./b/../c//d") == "/a/c/d")
        #expect(FileSystem.absolute("x") == FileSystem.absolute(FileManager.default.currentDirectoryPath) + "/x")
    }

    @Test func removeTreeRemovesReadOnlyDirectoriesAndMissingIsFine() throws {
        let directory = try TemporaryDirectory()
        let tree = directory.path + "/tree"
        try FileSystem.makeDirectories(tree + "/a/b")
        try AtomicFile.write(Data("x".utf8), to: tree + "/a/b/file")
        try FileSystem.chmod(tree + "/a", 0o555)
        try FileSystem.removeTree(tree)
        #expect(try FileSystem.lstatIfPresent(tree) == nil)
        try FileSystem.removeTree(tree)
    }

    @Test func statReportsKindsAndMissingPaths() throws {
        let directory = try TemporaryDirectory()
        #expect(try FileSystem.stat(directory.path).isDirectory)
        #expect(try FileSystem.statIfPresent(directory.path + "/none") == nil)
        #expect(throws: StoreError.self) { try FileSystem.stat(directory.path + "/none") }
        let fifo = directory.path + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(try FileSystem.lstat(fifo).kindDescription == "a FIFO")
    }
}
