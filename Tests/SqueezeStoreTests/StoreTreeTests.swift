import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

@Suite struct StoreTreeTests {
    /// Builds the same tree (two files, a nested file, an empty directory) in
    /// the given order of creation.
    private func makeTree(in directory: StoreTestDirectory, _ name: String, reversed: Bool) throws -> String {
        var steps: [() throws -> Void] = [
            { try directory.write("\(name)/a.txt", "alpha") },
            { try directory.write("\(name)/sub/b.bin", [0, 1, 2, 255]) },
            { try directory.write("\(name)/run.sh", "#!/bin/sh\n", mode: 0o755) },
            { _ = try directory.makeDirectory("\(name)/empty") },
        ]
        if reversed { steps.reverse() }
        for step in steps { try step() }
        return directory.path + "/" + name
    }

    @Test func directoryDigestIgnoresCreationOrderAndMatchesIngest() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let first = try makeTree(in: directory, "one", reversed: false)
        let second = try makeTree(in: directory, "two", reversed: true)
        let digest = try store.digest(ofPath: first)
        #expect(digest.type == .directory)
        #expect(digest.size == 5 + 4 + 10)
        #expect(try store.digest(ofPath: second) == digest)
        #expect(try store.ingest(second) == digest)
    }

    @Test func directoryDigestChangesWithAnyByteNameModeOrEmptyDirectory() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        var seen: Set<Digest> = []
        func record(_ path: String) throws {
            let digest = try store.digest(ofPath: path).digest
            #expect(seen.insert(digest).inserted, "digest repeated after a change")
        }
        let tree = try makeTree(in: directory, "tree", reversed: false)
        try record(tree)
        try directory.write("tree/a.txt", "alphb")
        try record(tree)
        try FileSystem.rename(tree + "/a.txt", to: tree + "/a2.txt")
        try record(tree)
        try FileSystem.chmod(tree + "/a2.txt", 0o755)
        try record(tree)
        _ = try directory.makeDirectory("tree/empty2")
        try record(tree)
        try FileSystem.rename(tree + "/empty2", to: tree + "/sub/empty2")
        try record(tree)
        // Only the owner's execute bit is content; group/other bits are not.
        let before = try store.digest(ofPath: tree)
        try FileSystem.chmod(tree + "/a2.txt", 0o700)
        #expect(try store.digest(ofPath: tree) == before)
    }

    @Test func manifestHasTheDocumentedCanonicalForm() throws {
        let blob = Hashing.sha256(Array("x".utf8))
        let manifest = TreeManifest(entries: [
            .init(path: "z", kind: .emptyDirectory),
            .init(path: "a \"q\"/b", kind: .file(digest: blob, size: 1, executable: true)),
        ])
        let expected = "{\"entries\":[{\"digest\":\"\(blob)\",\"executable\":true,\"path\":\"a \\\"q\\\"/b\",\"size\":1,"
            + "\"type\":\"file\"},{\"path\":\"z\",\"type\":\"dir\"}],\"format\":1}"
        #expect(String(decoding: manifest.canonicalBytes, as: UTF8.self) == expected)
        #expect(try TreeManifest.parse(manifest.canonicalBytes, origin: "m") == manifest)
        #expect(manifest.digest == Hashing.sha256(Array(expected.utf8)))
    }

    @Test(arguments: [
        "{\"entries\":[{\"path\":\"../x\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"/x\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a//b\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a/./b\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a\",\"type\":\"dir\"},{\"path\":\"a\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a\",\"type\":\"dir\"},{\"path\":\"a/b\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"b\",\"type\":\"dir\"},{\"path\":\"a\",\"type\":\"dir\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a\",\"type\":\"link\"}],\"format\":1}",
        "{\"entries\":[{\"path\":\"a\",\"type\":\"file\"}],\"format\":1}",
        "{\"entries\":[],\"format\":2}",
        "{\"format\":1,\"entries\":[]}",
        "{\"entries\":[], \"format\":1}",
        "not json",
    ])
    func manifestParsingRejectsUnsafeOrNonCanonicalInput(text: String) {
        #expect(throws: StoreError.self) { try TreeManifest.parse(Array(text.utf8), origin: "m") }
    }

    @Test func inputDigestsFollowSymlinksAndRejectCycles() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let target = try directory.write("data/real.txt", "payload")
        let input = try directory.makeDirectory("input")
        #expect(symlink(target, input + "/linked.txt") == 0)
        let copy = try directory.makeDirectory("copy")
        try directory.write("copy/linked.txt", "payload")
        #expect(try store.digest(ofPath: input) == (try store.digest(ofPath: copy)))
        #expect(try store.digest(ofPath: input + "/linked.txt") == (try store.digest(ofPath: target)))

        #expect(symlink(input, input + "/loop") == 0)
        let error = try #require(throws: StoreError.self) { try store.digest(ofPath: input) }
        #expect(error.kind == .unsupported)
        #expect(error.description.contains("cycle"))
    }
}
