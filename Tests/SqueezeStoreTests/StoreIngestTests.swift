import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

@Suite struct StoreIngestTests {
    @Test func ingestingAFileRenamesItIntoAReadOnlyObject() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let staging = try store.makeStagingDirectory(name: "out")
        #expect(staging.hasPrefix(store.root + "/tmp/"))
        let source = staging + "/model.bin"
        try storeTestCreateFile(atPath: source, contents: Data("weights".utf8))
        let inode = try FileSystem.stat(source).inode

        let ref = try store.ingest(source)
        #expect(ref == ArtifactRef(digest: Hashing.sha256(Array("weights".utf8)), type: .file, size: 7))
        #expect(try FileSystem.lstatIfPresent(source) == nil)
        let stored = try store.path(for: ref)
        #expect(stored == store.root + "/objects/\(ref.digest.hex.prefix(2))/\(ref.digest.hex)")
        let status = try FileSystem.stat(stored)
        #expect(status.inode == inode, "the object must be the staged file itself, not a copy")
        #expect(status.permissions == 0o444)
        #expect(try String(contentsOfFile: stored, encoding: .utf8) == "weights")
        #expect(store.contains(ref))
    }

    /// Files a stage wrote with hashing (model files) are not hashed again by
    /// ingest; a file changed after it was written is.
    @Test func ingestTakesTheDigestRecordedWhenTheFileWasWritten() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let staging = try store.makeStagingDirectory(name: "model")
        var written: [String: Digest] = [:]
        for name in ["config.json", "model.safetensors"] {
            let writer = try AtomicFile.Writer(path: staging + "/" + name, hashing: true)
            try writer.write("contents of \(name)")
            written[name] = try writer.commit()
        }
        let changed = staging + "/vocab.txt"
        let writer = try AtomicFile.Writer(path: changed, hashing: true)
        try writer.write("[PAD]\n")
        try writer.commit()
        let handle = try #require(FileHandle(forWritingAtPath: changed))
        handle.seekToEndOfFile()
        handle.write(Data("[UNK]\n".utf8))
        try handle.close()

        let tree = try store.ingest(staging)
        #expect(store.hashCount == 1, "only the file changed after writing is hashed")
        let root = try store.path(for: tree)
        for (name, digest) in written {
            #expect(digest == (try Hashing.sha256(fileAt: root + "/" + name)))
        }
        #expect(try FileSystem.readFile(root + "/vocab.txt") == Array("[PAD]\n[UNK]\n".utf8))
    }

    @Test func ingestingStoredContentAgainOnlyDropsTheSource() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let first = try store.ingest(try directory.write("a", "same"))
        let objectInode = try FileSystem.stat(try store.path(for: first)).inode
        let secondSource = try directory.write("b", "same")
        #expect(try store.ingest(secondSource) == first)
        #expect(try FileSystem.lstatIfPresent(secondSource) == nil)
        #expect(try FileSystem.stat(try store.path(for: first)).inode == objectInode)

        let treeSource = try directory.write("t1/x", "x")
        let tree = try store.ingest(FileSystem.parent(of: treeSource))
        let treePath = try store.path(for: tree)
        try directory.write("t2/x", "x")
        #expect(try store.ingest(directory.path + "/t2") == tree)
        #expect(try FileSystem.lstatIfPresent(directory.path + "/t2") == nil)
        #expect(try store.path(for: tree) == treePath)
    }

    @Test func ingestedDirectoryIsMaterializedAsHardLinksToBlobs() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let staging = try store.makeStagingDirectory(name: "stage/with odd:name")
        #expect(!FileSystem.parent(of: staging).hasSuffix("stage"))
        try FileManager.default.createDirectory(atPath: staging + "/model/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: staging + "/model/empty", withIntermediateDirectories: true)
        try storeTestCreateFile(atPath: staging + "/model/config.json", contents: Data("{}".utf8))
        try storeTestCreateFile(atPath: staging + "/model/sub/copy.json", contents: Data("{}".utf8))
        try storeTestCreateFile(atPath: staging + "/model/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])

        let ref = try store.ingest(staging + "/model")
        #expect(ref.type == .directory)
        #expect(ref.size == 2 + 2 + 10)
        #expect(try FileSystem.lstatIfPresent(staging + "/model") == nil)
        let tree = try store.path(for: ref)
        #expect(tree == store.root + "/trees/\(ref.digest.hex.prefix(2))/\(ref.digest.hex)")
        let jsonDigest = Hashing.sha256(Array("{}".utf8))
        let jsonObject = store.blobPath(BlobID(digest: jsonDigest, executable: false))
        #expect(try FileSystem.stat(tree + "/config.json").inode == (try FileSystem.stat(jsonObject).inode))
        #expect(try FileSystem.stat(tree + "/sub/copy.json").inode == (try FileSystem.stat(jsonObject).inode))
        let toolObject = store.blobPath(BlobID(digest: Hashing.sha256(Array("#!/bin/sh\n".utf8)), executable: true))
        #expect(try FileSystem.stat(toolObject).permissions == 0o555)
        #expect(try FileSystem.stat(tree + "/tool").inode == (try FileSystem.stat(toolObject).inode))
        #expect(try FileSystem.stat(tree + "/empty").isDirectory)
        #expect(try FileSystem.listDirectory(tree + "/empty").isEmpty)
        #expect(try FileSystem.listDirectory(tree).sorted() == ["config.json", "empty", "sub", "tool"])
        #expect(try store.digest(ofPath: tree) == ref)
        #expect(store.verifyAll().isClean)
    }

    @Test func aMissingMaterializedTreeIsRebuiltFromBlobs() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try directory.write("out/a/b.txt", "b")
        let ref = try store.ingest(directory.path + "/out")
        let tree = try store.path(for: ref)
        try FileSystem.removeTree(tree)
        #expect(store.contains(ref))
        #expect(try store.path(for: ref) == tree)
        #expect(try String(contentsOfFile: tree + "/a/b.txt", encoding: .utf8) == "b")
        // A stray file added to a materialized tree is noticed and the tree rebuilt.
        try FileSystem.chmod(tree, 0o755)
        try directory.write(String(tree.dropFirst(directory.path.count + 1)) + "/stray", "x")
        #expect(try store.path(for: ref) == tree)
        #expect(try FileSystem.lstatIfPresent(tree + "/stray") == nil)
    }

    @Test func symlinksAndSpecialFilesAreRejectedWithTheirPath() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let target = try directory.write("out/real.txt", "r")
        #expect(symlink(target, directory.path + "/out/link") == 0)
        let error = try #require(throws: StoreError.self) { try store.ingest(directory.path + "/out") }
        #expect(error.kind == .unsupported)
        #expect(error.path == directory.path + "/out/link")
        #expect(error.description.contains("symbolic link"))
        #expect(throws: StoreError.self) { try store.ingest(directory.path + "/out/link") }

        let fifoDirectory = try directory.makeDirectory("fifo")
        #expect(mkfifo(fifoDirectory + "/pipe", 0o644) == 0)
        let fifoError = try #require(throws: StoreError.self) { try store.ingest(fifoDirectory) }
        #expect(fifoError.path == fifoDirectory + "/pipe")
        #expect(fifoError.description.contains("FIFO"))
    }

    @Test func aSourceWithOtherHardLinksIsCopiedNotTakenOver() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let original = try directory.write("dataset.csv", "a,b\n")
        let staged = directory.path + "/staged.csv"
        #expect(link(original, staged) == 0)
        let ref = try store.ingest(staged)
        let object = try store.path(for: ref)
        #expect(try FileSystem.stat(object).inode != (try FileSystem.stat(original).inode))
        #expect(try FileSystem.stat(original).permissions == 0o644)
        #expect(try FileSystem.lstatIfPresent(staged) == nil)
    }

    @Test func pathsInsideTheStoreCannotBeIngested() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let ref = try store.ingest(try directory.write("f", "content"))
        let object = try store.path(for: ref)
        let error = try #require(throws: StoreError.self) { try store.ingest(object) }
        #expect(error.kind == .unsupported)
        #expect(try store.path(for: ref) == object)
        // Nor a directory holding the store (it would be moved away), nor the staging area itself.
        for path in [directory.path, store.root, store.root + "/tmp", store.privateTemporary, store.root + "/objects"] {
            #expect(throws: StoreError.self) { try store.ingest(path) }
        }
        #expect(store.verifyAll().isClean)
        #expect(try store.path(for: ref) == object)
    }

    @Test func missingArtifactsAreReportedAsMissing() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let absent = ArtifactRef(digest: Hashing.sha256(Array("nothing".utf8)), type: .file, size: 7)
        #expect(!store.contains(absent))
        let error = try #require(throws: StoreError.self) { try store.path(for: absent) }
        #expect(error.kind == .missing)
        #expect(error.isCacheMiss)
        let absentTree = ArtifactRef(digest: absent.digest, type: .directory, size: 0)
        #expect(!store.contains(absentTree))
        #expect(throws: StoreError.self) { try store.path(for: absentTree) }
    }
}
