import Foundation
import Testing

import SqueezeSupport

@Suite struct KnownDigestsTests {
    @Test func aFileWrittenWithHashingIsKnownUntilItChanges() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/weights.bin"
        let writer = try AtomicFile.Writer(path: path, hashing: true)
        try writer.write("weights")
        let digest = try #require(try writer.commit())
        #expect(KnownDigests.digest(path: path, status: try FileSystem.stat(path)) == digest)
        #expect(KnownDigests.digest(path: directory.path + "/./weights.bin", status: try FileSystem.stat(path)) == digest,
                "paths are compared in absolute, normalised form")

        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("!".utf8))
        try handle.close()
        #expect(KnownDigests.digest(path: path, status: try FileSystem.stat(path)) == nil)
    }

    @Test func filesWrittenWithoutHashingOrElsewhereAreNotKnown() throws {
        let directory = try TemporaryDirectory()
        let plain = directory.path + "/plain"
        try AtomicFile.write(Array("x".utf8), to: plain)
        #expect(KnownDigests.digest(path: plain, status: try FileSystem.stat(plain)) == nil)

        let original = directory.path + "/original"
        let writer = try AtomicFile.Writer(path: original, hashing: true)
        try writer.write("y")
        try writer.commit()
        let moved = directory.path + "/moved"
        try FileSystem.rename(original, to: moved)
        #expect(KnownDigests.digest(path: moved, status: try FileSystem.stat(moved)) == nil, "another path is another file")
    }
}
