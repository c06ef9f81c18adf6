import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

/// The per-key resumable areas: handed out by key, removed by key, and
/// garbage-collected when orphaned.
@Suite struct StoreResumableTests {
    @Test func areasAreDirectoriesByKeyOutsideStagingAndEntries() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        let area = try store.resumableDirectory(forKey: "k1")
        #expect(area == store.root + "/resumable/k1")
        #expect(!FileManager.default.fileExists(atPath: area), "not created until a stage writes there")
        #expect(throws: StoreError.self) { try store.resumableDirectory(forKey: "../escape") }
        #expect(throws: StoreError.self) { try store.resumableDirectory(forKey: "") }

        try FileSystem.makeDirectories(area + "/train/checkpoint-1")
        _ = try directory.write(".squeeze/resumable/k1/train/checkpoint-1/state.json", "{}")
        #expect(try store.resumableKeys() == ["k1"])
        try store.removeResumableArea(forKey: "k1")
        try store.removeResumableArea(forKey: "k1")
        #expect(!FileManager.default.fileExists(atPath: area))
        #expect(try store.resumableKeys() == [])
    }

    /// gc removes an area whose key has an entry (a leftover) and one not
    /// written for longer than the maximum age, and keeps a recent one.
    @Test func garbageCollectionRemovesOrphanedAreas() throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try store.save(storeTestEntry(key: "finished", outputs: [:]))
        for key in ["finished", "stale", "recent"] {
            _ = try directory.write(".squeeze/resumable/\(key)/train/checkpoint-0000000003/tensors.safetensors", String(repeating: "x", count: 100))
        }
        _ = try directory.write(".squeeze/resumable/stray-file", "not an area")
        let eightDaysAgo = Int(Date().timeIntervalSince1970) - 8 * 86_400
        for path in ["", "/train", "/train/checkpoint-0000000003", "/train/checkpoint-0000000003/tensors.safetensors"] {
            try storeTestSetMtime(store.root + "/resumable/stale" + path, seconds: eightDaysAgo)
        }

        let report = try store.collectGarbage(keepingKeys: ["finished"])
        #expect(report.removedResumableAreas == 3, "\(report)")
        #expect(report.keptEntries == 1)
        #expect(try store.resumableKeys() == ["recent"])
        #expect(!FileManager.default.fileExists(atPath: store.root + "/resumable/stray-file"))

        let all = try store.collectGarbage(keepingKeys: ["finished"], resumableMaximumAge: 0)
        #expect(all.removedResumableAreas == 1)
        #expect(try store.resumableKeys() == [])
    }

    /// The area of a key a live run holds the lock of is kept, even with an
    /// entry and at maximum age 0: that run may be writing checkpoints there.
    @Test func garbageCollectionKeepsTheAreaOfALockedKey() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze")
        try store.save(storeTestEntry(key: "running", outputs: [:]))
        _ = try directory.write(".squeeze/resumable/running/train/checkpoint-0000000001/state.json", "{}")
        let lock = try await store.lock(key: "running")
        let held = try store.collectGarbage(keepingKeys: ["running"], resumableMaximumAge: 0)
        #expect(held.removedResumableAreas == 0)
        #expect(try store.resumableKeys() == ["running"])
        lock.release()
        let released = try store.collectGarbage(keepingKeys: ["running"], resumableMaximumAge: 0)
        #expect(released.removedResumableAreas == 1)
        #expect(try store.resumableKeys() == [])
    }
}
