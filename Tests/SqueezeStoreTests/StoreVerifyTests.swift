import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

@Suite struct StoreVerifyTests {
    @Test func aFlippedByteWithRestoredMtimeIsFoundByVerifyAll() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let ref = try store.ingest(try directory.write("w.bin", "0123456789"))
        try store.save(storeTestEntry(key: "k1", outputs: ["w": ref]))
        let object = try store.path(for: ref)
        let mtime = try storeTestMtime(object)
        try storeTestFlipByte(object, at: 3)
        try storeTestSetMtime(object, seconds: mtime.0, nanoseconds: mtime.1)

        let report = store.verifyAll()
        #expect(!report.isClean)
        #expect(report.checkedObjects == 1)
        #expect(report.checkedEntries == 1)
        #expect(report.problems.contains { $0.hasPrefix(object + ": content hashes to") })
        #expect(report.problems.contains { $0.contains("stages/k1.json") })
        #expect(try FileSystem.lstatIfPresent(object) != nil, "verifyAll must not modify without repair")

        let repaired = store.verifyAll(repair: true)
        #expect(!repaired.isClean)
        #expect(try FileSystem.lstatIfPresent(object) == nil)
        #expect(store.entry(forKey: "k1") == nil)
        #expect(store.verifyAll().isClean)
    }

    @Test func pathForDetectsAChangedStatAndRemovesTheBadObject() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let ref = try store.ingest(try directory.write("w.bin", "0123456789"))
        let object = try store.path(for: ref)
        try storeTestFlipByte(object, at: 0)
        try storeTestSetMtime(object, seconds: 1_000_000)

        let error = try #require(throws: StoreError.self) { try store.path(for: ref) }
        #expect(error.kind == .corrupt)
        #expect(error.isCacheMiss)
        #expect(error.path == object)
        #expect(try FileSystem.lstatIfPresent(object) == nil)
        #expect(!store.contains(ref))
        #expect(store.verifyAll().isClean)
    }

    @Test func aCorruptBlobInsideATreeRemovesBlobAndTree() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try directory.write("out/a.txt", "aaaa")
        try directory.write("out/b.txt", "bbbb")
        let ref = try store.ingest(directory.path + "/out")
        let tree = try store.path(for: ref)
        let blob = store.blobPath(BlobID(digest: Hashing.sha256(Array("bbbb".utf8)), executable: false))
        try storeTestFlipByte(blob, at: 1)
        try storeTestSetMtime(blob, seconds: 1_000_000)

        let error = try #require(throws: StoreError.self) { try store.path(for: ref) }
        #expect(error.kind == .corrupt)
        #expect(try FileSystem.lstatIfPresent(tree) == nil)
        #expect(!store.contains(ref))
        #expect(store.verifyAll().isClean)
        // Ingesting the good content again restores it.
        try directory.write("again/a.txt", "aaaa")
        try directory.write("again/b.txt", "bbbb")
        #expect(try store.ingest(directory.path + "/again") == ref)
        #expect(try String(contentsOfFile: try store.path(for: ref) + "/b.txt", encoding: .utf8) == "bbbb")
    }

    @Test func verifyAllReportsTamperedTreesManifestsAndStrayFiles() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try directory.write("out/a.txt", "a")
        let ref = try store.ingest(directory.path + "/out")
        let tree = try store.path(for: ref)
        try store.save(storeTestEntry(key: "k", outputs: ["out": ref]))
        #expect(store.verifyAll().isClean)

        // Extra file inside the materialized tree: reported, repaired by rebuilding lazily.
        try FileSystem.chmod(tree, 0o755)
        try storeTestCreateFile(atPath: tree + "/extra", contents: Data())
        let report = store.verifyAll()
        #expect(report.problems == ["\(tree): materialized directory does not match its manifest"])
        #expect(!store.verifyAll(repair: true).isClean)
        #expect(store.verifyAll().isClean)
        #expect(try store.path(for: ref) == tree)

        // A stray file under objects/ and a bad manifest.
        try storeTestCreateFile(atPath: store.root + "/objects/zz", contents: Data())
        let manifest = store.manifestPath(ref.digest)
        try storeTestFlipByte(manifest, at: 5)
        let fakeDigest = Hashing.sha256(Array("fake".utf8))
        let fakeObject = store.blobPath(BlobID(digest: fakeDigest, executable: false))
        try FileSystem.makeDirectories(FileSystem.parent(of: fakeObject))
        let fakeTarget = try directory.write("fake", "fake")
        #expect(symlink(fakeTarget, fakeObject) == 0)
        let problems = store.verifyAll().problems
        #expect(problems.contains("\(fakeObject): is not a regular file"))
        #expect(problems.contains("\(store.root)/objects/zz: unexpected file in objects/"))
        #expect(problems.contains { $0.hasPrefix(manifest + ": manifest content hashes to") })
        #expect(problems.contains { $0.hasPrefix(store.root + "/stages/k.json: output `out`") })
        _ = store.verifyAll(repair: true)
        #expect(store.verifyAll().isClean)
        #expect(store.entry(forKey: "k") == nil)
    }

    /// The states a `kill -9` can leave between the steps of ingest and save.
    @Test func everyIntermediateStateOfAnInterruptedWriteVerifiesClean() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        do {
            let store = try ContentStore(root: root)
            // Blob renamed in, nothing else (killed before the manifest).
            let blobOnly = try store.makeStagingDirectory(name: "x") + "/f"
            try storeTestCreateFile(atPath: blobOnly, contents: Data("orphan".utf8))
            _ = try store.ingest(blobOnly)
            // Manifest written, tree not materialized yet.
            try directory.write("out/a", "a")
            let ref = try store.ingest(directory.path + "/out")
            try FileSystem.removeTree(store.treePath(ref.digest))
            // Half-built tree and half-written files in the staging area.
            let staging = try store.makeStagingDirectory(name: "half")
            try FileSystem.makeDirectories(staging + "/tree-99/sub")
            try storeTestCreateFile(atPath: staging + "/write-1234", contents: Data("{\"partial".utf8))
            #expect(store.verifyAll().isClean)
        }
        // A process killed with its staging directory still present (lock not held).
        let dead = root + "/tmp/999999-deadbeef"
        try FileSystem.makeDirectories(dead + "/tree-1")
        try storeTestCreateFile(atPath: dead + "/.lock", contents: Data())
        let store = try ContentStore(root: root)
        #expect(try FileSystem.lstatIfPresent(dead) == nil)
        #expect(store.verifyAll().isClean)
        #expect(store.allEntries().isEmpty)
    }

    @Test func theStatCacheAvoidsRehashingUnchangedInputs() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let input = try directory.write("input.txt", "v1")
        try storeTestSetMtime(input, seconds: 1_600_000_000)
        let first = try store.digest(ofPath: input)
        #expect(store.hashCount == 1)
        #expect(try store.digest(ofPath: input) == first)
        #expect(store.hashCount == 1)

        try directory.write("input.txt", "v2")
        try storeTestSetMtime(input, seconds: 1_600_000_001)
        let second = try store.digest(ofPath: input)
        #expect(second != first)
        #expect(store.hashCount == 2)

        // Modified just now: could change again within the same mtime tick, so not trusted.
        try directory.write("input.txt", "v3")
        _ = try store.digest(ofPath: input)
        _ = try store.digest(ofPath: input)
        #expect(store.hashCount == 4)
    }

    @Test func verifiedObjectsAreNotRehashedAndMarksPersistAcrossInstances() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let input = try directory.write("input.bin", "input")
        try storeTestSetMtime(input, seconds: 1_600_000_000)
        let ref: ArtifactRef
        do {
            let store = try ContentStore(root: root)
            ref = try store.ingest(try directory.write("out.bin", "output"))
            let afterIngest = store.hashCount
            _ = try store.path(for: ref)
            _ = try store.path(for: ref)
            #expect(store.hashCount == afterIngest, "ingest already verified the object")
            _ = try store.digest(ofPath: input)
            try store.flush()
        }
        let store = try ContentStore(root: root)
        _ = try store.path(for: ref)
        _ = try store.digest(ofPath: input)
        #expect(store.hashCount == 0)
    }

    @Test func flushMergesWithRecordsWrittenByAnotherProcess() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let first = try directory.write("one", "1")
        let second = try directory.write("two", "2")
        for path in [first, second] { try storeTestSetMtime(path, seconds: 1_600_000_000) }
        let storeA = try ContentStore(root: root)
        let storeB = try ContentStore(root: root)
        _ = try storeA.digest(ofPath: first)
        _ = try storeB.digest(ofPath: second)
        try storeA.flush()
        try storeB.flush()
        guard case .loaded(let records) = StatCacheFile.load(from: root + "/statcache.json") else {
            Issue.record("statcache.json unreadable")
            return
        }
        #expect(records[first]?.digest == Hashing.sha256(Array("1".utf8)))
        #expect(records[second]?.digest == Hashing.sha256(Array("2".utf8)))
    }

    /// Inode and device numbers with the top bit set (overlay file systems)
    /// survive the stat cache; a stat cache written by `JSONEncoder` still
    /// loads and still saves the re-hash.
    @Test func statRecordsKeepAll64BitsAndOldFilesLoad() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        try FileSystem.makeDirectories(root)
        let input = try directory.write("in", "data")
        try storeTestSetMtime(input, seconds: 1_600_000_000)
        var status = try FileSystem.stat(input)
        status.inode = UInt64.max - 5
        status.device = 1 << 63
        let record = StatRecord(status: status, digest: Hashing.sha256(Array("data".utf8)))
        let bytes = try StatCacheFile(entries: ["/big": record]).encoded()
        #expect(String(decoding: bytes, as: UTF8.self).contains(#""inode":-6"#))
        try storeTestCreateFile(atPath: root + "/statcache.json", contents: Data(bytes))
        guard case .loaded(let records) = StatCacheFile.load(from: root + "/statcache.json") else {
            Issue.record("statcache.json with 64-bit inodes unreadable")
            return
        }
        #expect(records["/big"] == record)

        let real = try FileSystem.stat(input)
        let old = #"{"entries":{"\#(input)":{"device":\#(real.device),"digest":"\#(Hashing.sha256(Array("data".utf8)))","inode":\#(real.inode),"mtime":\#(real.mtimeNanoseconds),"size":4}},"format":1}"#
        try storeTestCreateFile(atPath: root + "/statcache.json", contents: Data(old.utf8))
        let store = try ContentStore(root: root)
        #expect(try store.digest(ofPath: input).digest == Hashing.sha256(Array("data".utf8)))
        #expect(store.hashCount == 0, "the record written by JSONEncoder was trusted")
    }

    @Test func aCorruptStatCacheIsIgnoredAndRebuilt() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        try FileSystem.makeDirectories(root)
        try storeTestCreateFile(atPath: root + "/statcache.json", contents: Data("{\"format\":1,\"entries\":{\"x\":".utf8))
        let input = try directory.write("in", "data")
        try storeTestSetMtime(input, seconds: 1_600_000_000)
        let store = try ContentStore(root: root)
        _ = try store.digest(ofPath: input)
        try store.flush()
        guard case .loaded(let records) = StatCacheFile.load(from: root + "/statcache.json") else {
            Issue.record("statcache.json was not rebuilt")
            return
        }
        #expect(records.keys.sorted() == [input])

        try storeTestCreateFile(atPath: root + "/statcache.json", contents: Data("{\"format\":99,\"entries\":{}}".utf8))
        let reopened = try ContentStore(root: root)
        _ = try reopened.digest(ofPath: input)
        #expect(reopened.hashCount == 1)
    }
}
