import Foundation
import Glibc
import Synchronization
import Testing

@testable import SqueezeStore
import SqueezeSupport

@Suite struct StoreEntryTests {
    @Test func entriesRoundTripAndListSortedByKey() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let ref = try store.ingest(try directory.write("o", "output"))
        let entry = storeTestEntry(key: "b-key", outputs: ["model": ref])
        try store.save(entry)
        try store.save(storeTestEntry(key: "a-key", outputs: [:]))
        #expect(store.entry(forKey: "b-key") == entry)
        #expect(store.entry(forKey: "missing") == nil)
        #expect(store.allEntries().map(\.key) == ["a-key", "b-key"])
        let json = try String(contentsOfFile: store.root + "/stages/b-key.json", encoding: .utf8)
        #expect(json.contains("\"createdAt\": \"2023-11-14T22:13:20.250Z\""))
        #expect(json.contains("\"digest\": \"\(ref.digest)\""))

        try store.removeEntry(forKey: "a-key")
        try store.removeEntry(forKey: "a-key")
        #expect(store.allEntries().map(\.key) == ["b-key"])
    }

    /// A double metric that happens to be integral comes back a double, and an
    /// integer an integer: the cache hands back what the run reported.
    @Test func integralDoubleMetricsRoundTripAsDoubles() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        var entry = storeTestEntry(key: "metrics", outputs: [:])
        entry.metrics = ["accuracy": .double(3), "steps": .int(3), "curve": .array([.double(1), .double(0.5)]), "zero": .double(-0.0)]
        try store.save(entry)
        let json = try String(contentsOfFile: store.root + "/stages/metrics.json", encoding: .utf8)
        #expect(json.contains("\"accuracy\": 3.0,") && json.contains("\"steps\": 3,"), "\(json)")
        let read = try #require(store.entry(forKey: "metrics"))
        #expect(read == entry)
        #expect(read.metrics["accuracy"] == .double(3))
        #expect(read.metrics["steps"] == .int(3))
    }

    /// Entries written before the one codec (`JSONEncoder`: `"key" : value`,
    /// `3.0` written as `3`, an empty object as `{\n\n  }`) still read.
    @Test func entriesWrittenByJSONEncoderStillRead() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let old = """
            {
              "cpuSeconds" : 2.5,
              "createdAt" : "2023-11-14T22:13:20.250Z",
              "formatVersion" : 1,
              "key" : "old",
              "metrics" : {
                "accuracy" : 3,
                "loss" : 0.5
              },
              "outputs" : {

              },
              "recipeName" : "recipe",
              "stageID" : "stage",
              "stageType" : "test/stage",
              "stageVersion" : 1,
              "wallSeconds" : 1
            }
            """
        try store.save(storeTestEntry(key: "new", outputs: [:]))
        try storeTestCreateFile(atPath: store.root + "/stages/old.json", contents: Data(old.utf8))
        var expected = storeTestEntry(key: "old", outputs: [:])
        expected.metrics = ["accuracy": .int(3), "loss": .double(0.5)]
        expected.wallSeconds = 1
        #expect(store.entry(forKey: "old") == expected)
    }

    @Test func corruptOrMismatchedEntryFilesReadAsMissing() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try store.save(storeTestEntry(key: "good", outputs: [:]))
        try storeTestCreateFile(atPath: store.root + "/stages/truncated.json", contents: Data("{\"key\":\"trunc".utf8))
        try storeTestCreateFile(atPath: store.root + "/stages/binary.json", contents: Data([0xff, 0x00, 0x13]))
        let good = try FileSystem.readFile(store.root + "/stages/good.json")
        try storeTestCreateFile(atPath: store.root + "/stages/other.json", contents: Data(good))
        var badDigest = String(decoding: good, as: UTF8.self)
        badDigest = badDigest.replacingOccurrences(of: "\"key\": \"good\"", with: "\"key\": \"baddigest\"")
        badDigest = badDigest.replacingOccurrences(of: "\"outputs\": {}", with: "\"outputs\": {\"m\": {\"digest\": \"sha256:XYZ\", \"size\": 1, \"type\": \"file\"}}")
        try storeTestCreateFile(atPath: store.root + "/stages/baddigest.json", contents: Data(badDigest.utf8))

        for key in ["truncated", "binary", "other", "baddigest"] {
            #expect(store.entry(forKey: key) == nil, "\(key) should read as missing")
        }
        #expect(store.entry(forKey: "../good") == nil)
        #expect(store.allEntries().map(\.key) == ["good"])
        #expect(store.verifyAll().problems.count == 4)
    }

    @Test func saveRejectsInvalidKeysAndOutputsNotInTheStore() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        for key in ["", "../x", "a/b", ".hidden", String(repeating: "k", count: 201), "spa ce"] {
            let error = try #require(throws: StoreError.self) { try store.save(storeTestEntry(key: key, outputs: [:])) }
            #expect(error.kind == .invalidKey)
        }
        let absent = ArtifactRef(digest: Hashing.sha256(Array("never stored".utf8)), type: .file, size: 12)
        let error = try #require(throws: StoreError.self) { try store.save(storeTestEntry(key: "k", outputs: ["out": absent])) }
        #expect(error.kind == .missing)
        #expect(error.description.contains("`out`"))
        #expect(store.entry(forKey: "k") == nil)
    }

    @Test func aKeyLockExcludesAnotherStoreInstanceUntilReleased() async throws {
        let directory = try StoreTestDirectory()
        let first = try ContentStore(root: directory.path + "/.squeeze")
        let second = try ContentStore(root: directory.path + "/.squeeze")
        let held = try await first.lock(key: "stage-key")
        let acquired = Atomic<Bool>(false)
        let waiter = Task {
            let lock = try await second.lock(key: "stage-key")
            acquired.store(true, ordering: .sequentiallyConsistent)
            lock.release()
        }
        // A different key is independent.
        let other = try await second.lock(key: "other-key")
        other.release()
        try await Task.sleep(nanoseconds: 150_000_000)
        let acquiredWhileHeld = acquired.load(ordering: .sequentiallyConsistent)
        #expect(!acquiredWhileHeld)
        held.release()
        try await waiter.value
        let acquiredAfterRelease = acquired.load(ordering: .sequentiallyConsistent)
        #expect(acquiredAfterRelease)
    }

    @Test func waitingForALockCanBeCancelled() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let held = try await store.lock(key: "busy")
        let waiter = Task { try await store.lock(key: "busy") }
        try await Task.sleep(nanoseconds: 20_000_000)
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        held.release()
        let again = try await store.lock(key: "busy")
        again.release()
    }

    @Test func garbageCollectionKeepsReferencedArtifactsOnly() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try directory.write("keep/shared.txt", "shared")
        try directory.write("keep/own.txt", "keep")
        let kept = try store.ingest(directory.path + "/keep")
        let keptFile = try store.ingest(try directory.write("kept-file", "file"))
        try directory.write("drop/shared.txt", "shared")
        try directory.write("drop/gone.txt", "gone!")
        let dropped = try store.ingest(directory.path + "/drop")
        let orphan = try store.ingest(try directory.write("orphan", "never referenced"))
        try store.save(storeTestEntry(key: "keep", outputs: ["dir": kept, "file": keptFile]))
        try store.save(storeTestEntry(key: "drop", outputs: ["dir": dropped]))
        let lock = try await store.lock(key: "drop")
        lock.release()
        let droppedManifestSize = try FileSystem.stat(store.manifestPath(dropped.digest)).size

        let report = try store.collectGarbage(keepingKeys: ["keep", "absent"])
        #expect(report.removedEntries == 1)
        #expect(report.keptEntries == 1)
        // The dropped tree's manifest, its own blob, and the orphan blob.
        #expect(report.removedObjects == 3)
        #expect(report.removedBytes == droppedManifestSize + 5 + 16)
        #expect(store.entry(forKey: "drop") == nil)
        #expect(try FileSystem.lstatIfPresent(store.root + "/locks/drop.lock") == nil)
        #expect(!store.contains(dropped))
        #expect(!store.contains(orphan))
        #expect(store.contains(kept))
        #expect(store.contains(keptFile))
        #expect(try String(contentsOfFile: try store.path(for: kept) + "/shared.txt", encoding: .utf8) == "shared")
        #expect(store.verifyAll().isClean)
    }

    @Test func garbageCollectionRefusesWhileAnotherStoreIsOpen() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        do {
            let other = try ContentStore(root: directory.path + "/.squeeze")
            let error = try #require(throws: StoreError.self) { try store.collectGarbage(keepingKeys: []) }
            #expect(error.kind == .busy)
            _ = other
        }
        #expect(try store.collectGarbage(keepingKeys: []).removedEntries == 0)
    }

    @Test func initRemovesStaleStagingAreasButNotLiveOnes() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let live = try ContentStore(root: root)
        let liveStaging = try live.makeStagingDirectory(name: "running")
        try storeTestCreateFile(atPath: liveStaging + "/partial", contents: Data("x".utf8))
        let stale = root + "/tmp/424242-0123abcd"
        try FileSystem.makeDirectories(stale + "/stage-out-1/sub")
        try storeTestCreateFile(atPath: stale + "/.lock", contents: Data())
        try storeTestCreateFile(atPath: stale + "/stage-out-1/sub/file", contents: Data("x".utf8))
        try FileSystem.chmod(stale + "/stage-out-1/sub", 0o555)
        // Just created and not yet locked by its owner: kept for the grace period.
        let young = root + "/tmp/434343-fedcba98"
        try FileSystem.makeDirectories(young)

        let second = try ContentStore(root: root)
        #expect(try FileSystem.lstatIfPresent(stale) == nil)
        #expect(try FileSystem.lstatIfPresent(liveStaging + "/partial") != nil)
        #expect(try FileSystem.lstatIfPresent(young) != nil)
        #expect(second.privateTemporary != live.privateTemporary)
    }
}
