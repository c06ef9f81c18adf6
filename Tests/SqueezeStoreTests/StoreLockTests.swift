import Foundation
import Glibc
import Synchronization
import Testing

@testable import SqueezeStore
import SqueezeSupport

/// The per-key lock files: owner records, heartbeats, takeover of stale
/// locks (at once for a dead local holder, after the stale threshold for
/// another host's), cancellation, and what verify and gc do with stale ones.
/// Cross-process behaviour with real `squeeze` drivers is in
/// `Tests/SqueezeCLITests/SharedCacheTests.swift`.
@Suite struct StoreLockTests {
    @Test func aLockFileNamesItsHolderAndReleaseRemovesIt() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming())
        let lock = try await store.lock(key: "named")
        let path = store.lockPath("named")
        let owner = try SqueezeJSON.decode(LockOwner.self, from: try FileSystem.readFile(path))
        #expect(owner.token == lock.owner.token)
        #expect(abs(owner.createdAt.timeIntervalSince(lock.owner.createdAt)) < 0.001)
        #expect(owner.host == ProcessIdentity.current.host)
        #expect(owner.pid == Int(getpid()))
        #expect(owner.processStart != nil && owner.processStart == ProcessIdentity.startTime(of: getpid()))
        #expect(owner.bootID != nil && owner.pidNamespace != nil)
        #expect(lock.isHeld)
        // Only the lock itself is left in locks/: the claim's own name is gone.
        #expect(try lockDirectoryNames(store) == ["named.lock"])

        lock.release()
        #expect(!lock.isHeld)
        #expect(try FileSystem.lstatIfPresent(path) == nil)
        lock.release()
        #expect(try lockDirectoryNames(store) == [])
    }

    @Test func theHeartbeatAdvancesTheLockFilesMtimeWhileHeld() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming(heartbeatSeconds: 0.05))
        let lock = try await store.lock(key: "beating")
        let path = store.lockPath("beating")
        let longAgo = Int(Date().timeIntervalSince1970) - 1000
        try storeTestSetMtime(path, seconds: longAgo)
        var beaten = false
        for _ in 0..<100 where !beaten {
            try await Task.sleep(nanoseconds: 20_000_000)
            beaten = try storeTestMtime(path).0 > longAgo + 900
        }
        #expect(beaten, "the heartbeat did not move the mtime within 2 s")
        #expect(lock.isHeld)
        lock.release()
        #expect(try FileSystem.lstatIfPresent(path) == nil)
    }

    @Test func aLockOfAnExitedProcessOnThisHostIsTakenOverAtOnce() async throws {
        let directory = try StoreTestDirectory()
        // A day-long stale threshold: only the holder's death can explain a takeover.
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 86_400))
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        var owner = LockOwner.current(timing: store.lockTiming)
        owner.pid = Int(exited.processIdentifier)
        owner.processStart = 1
        try plantLock(store, key: "orphaned", owner: owner, secondsAgo: 0)

        // Within the wait bound: the threshold is a day, so only the dead pid can explain it.
        let lock = try #require(try await lockWithin(store, key: "orphaned", seconds: 120))
        #expect(try currentOwner(store, key: "orphaned")?.token == lock.owner.token)
        lock.release()
    }

    @Test func aReusedPidIsNotTakenForTheHolder() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 86_400))
        // A live pid (ours) that started at another time than the holder did.
        var owner = LockOwner.current(timing: store.lockTiming)
        owner.processStart = (owner.processStart ?? 0) + 12_345
        try plantLock(store, key: "reused", owner: owner, secondsAgo: 0)
        let lock = try #require(try await lockWithin(store, key: "reused", seconds: 120))
        lock.release()
    }

    @Test func aLiveHolderOnThisHostIsWaitedForWhateverItsHeartbeat() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 0.2))
        // This very process, with an hour-old heartbeat: alive by its pid and start time.
        try plantLock(store, key: "alive", owner: LockOwner.current(timing: store.lockTiming), secondsAgo: 3600)
        #expect(try await lockWithin(store, key: "alive", seconds: 1) == nil)
        #expect(try FileSystem.lstatIfPresent(store.lockPath("alive")) != nil)
    }

    @Test func anotherHostsLockIsTakenOverAfterItsHeartbeatGoesStale() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(
            root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 1, maximumPollSeconds: 0.05))
        let owner = remoteOwner()
        try plantLock(store, key: "remote", owner: owner, secondsAgo: 0)
        let started = Date()
        let lock = try #require(try await lockWithin(store, key: "remote", seconds: 120))
        let waited = Date().timeIntervalSince(started)
        // Not before the threshold. No upper bound: a full test run can keep the cooperative pool busy for minutes.
        #expect(waited > 0.9, "waited \(waited) s")
        #expect(try currentOwner(store, key: "remote")?.token == lock.owner.token)
        lock.release()
    }

    @Test func anotherHostsLockWithALiveHeartbeatIsNotTakenOver() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(
            root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 1.5, maximumPollSeconds: 0.05))
        try plantLock(store, key: "beating", owner: remoteOwner(), secondsAgo: 0)
        let path = store.lockPath("beating")
        // The other host's heartbeat, every 0.1 s, on a thread of its own (not the cooperative pool, which other tests may keep busy).
        let beating = Flag()
        let heartbeat = Thread {
            while beating.value.load(ordering: .relaxed) {
                _ = utimensat(AT_FDCWD, path, nil, 0)
                usleep(100_000)
            }
        }
        heartbeat.start()
        #expect(try await lockWithin(store, key: "beating", seconds: 3) == nil)
        #expect(try currentOwner(store, key: "beating")?.host == "other-node.invalid")
        // Once the beat stops, the lock goes stale and is taken over.
        beating.value.store(false, ordering: .relaxed)
        let lock = try #require(try await lockWithin(store, key: "beating", seconds: 120))
        lock.release()
    }

    @Test func aHolderWithASlowerHeartbeatGetsThreeOfItsBeats() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming(staleAfterSeconds: 1))
        // Beats every 200 s: 30 s without one is well within three beats (wide
        // margins: a full test run can stall this task for a while), 700 s is not.
        try plantLock(store, key: "slow", owner: remoteOwner(heartbeatSeconds: 200), secondsAgo: 30)
        #expect(try await lockWithin(store, key: "slow", seconds: 1) == nil)
        try plantLock(store, key: "slower", owner: remoteOwner(heartbeatSeconds: 200), secondsAgo: 700)
        let lock = try #require(try await lockWithin(store, key: "slower", seconds: 120))
        lock.release()
    }

    @Test func anOldLockOfAnotherHostOrWithoutOwnerIsTakenOverAtOnce() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming())
        try plantLock(store, key: "old-remote", owner: remoteOwner(), secondsAgo: 3600)
        // An empty file, as the flock-based store left behind.
        let empty = store.lockPath("old-empty")
        try storeTestCreateFile(atPath: empty, contents: Data())
        try storeTestSetMtime(empty, seconds: Int(Date().timeIntervalSince1970) - 3600)
        // Well within the 60 s threshold, which the hour-old heartbeat is past.
        for key in ["old-remote", "old-empty"] {
            let lock = try #require(try await lockWithin(store, key: key, seconds: 120), "\(key)")
            lock.release()
        }
        // A young file without an owner record is waited for (an hour's threshold: margin for a stalled test).
        let patient = try ContentStore(root: store.root, lockTiming: LockTiming(staleAfterSeconds: 3600))
        try storeTestCreateFile(atPath: store.lockPath("young-empty"), contents: Data())
        #expect(try await lockWithin(patient, key: "young-empty", seconds: 0.5) == nil)
    }

    @Test func aTakenOverHolderNoticesAndLeavesTheNewLockAlone() async throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let holderStore = try ContentStore(root: root, lockTiming: LockTiming(heartbeatSeconds: 0.05))
        let held = try await holderStore.lock(key: "contested")
        // Another process removed it as stale and took it (simulated by hand).
        let path = holderStore.lockPath("contested")
        try FileSystem.removeFile(path)
        try plantLock(holderStore, key: "contested", owner: remoteOwner(), secondsAgo: 0)
        var noticed = false
        for _ in 0..<100 where !noticed {
            try await Task.sleep(nanoseconds: 20_000_000)
            noticed = !held.isHeld
        }
        #expect(noticed)
        held.release()
        #expect(try currentOwner(holderStore, key: "contested")?.host == "other-node.invalid")
    }

    @Test func waitersAreServedOneAtATime() async throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let stores = try (0..<3).map { _ in try ContentStore(root: root, lockTiming: LockTiming(maximumPollSeconds: 0.01)) }
        let counts = Counts()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<12 {
                let store = stores[index % stores.count]
                group.addTask {
                    let lock = try await store.lock(key: "shared")
                    if counts.inside.add(1, ordering: .sequentiallyConsistent).newValue > 1 {
                        counts.overlaps.add(1, ordering: .relaxed)
                    }
                    try await Task.sleep(nanoseconds: 5_000_000)
                    counts.inside.subtract(1, ordering: .sequentiallyConsistent)
                    lock.release()
                }
            }
            try await group.waitForAll()
        }
        #expect(counts.overlaps.load(ordering: .relaxed) == 0)
        #expect(try lockDirectoryNames(stores[0]) == [])
    }

    @Test func verifyListsStaleLockFilesAndRepairAndGCRemoveThem() async throws {
        let directory = try StoreTestDirectory()
        let store = try ContentStore(root: directory.path + "/.squeeze", lockTiming: LockTiming())
        let live = try await store.lock(key: "live")
        try plantLock(store, key: "dead-remote", owner: remoteOwner(), secondsAgo: 3600)
        var exitedOwner = LockOwner.current(timing: store.lockTiming)
        exitedOwner.processStart = (exitedOwner.processStart ?? 0) + 1
        // A claim left by a process killed while it waited.
        let claim = store.lockPath("waited") + ".0123abcd.claim"
        try storeTestCreateFile(atPath: claim, contents: Data(try SqueezeJSON.encode(exitedOwner)))
        // A fresh lock of another host (beating hourly: margin for a stalled test) is live.
        try plantLock(store, key: "fresh-remote", owner: remoteOwner(heartbeatSeconds: 3600), secondsAgo: 0)

        let report = store.verifyAll()
        #expect(report.isClean)
        #expect(report.staleLocks.count == 2, "\(report.staleLocks)")
        #expect(report.staleLocks.contains { $0.contains("dead-remote.lock") && $0.contains("held by pid 4242 on other-node.invalid") })
        #expect(report.staleLocks.contains { $0.contains(".claim") && $0.contains("has exited") })
        #expect(try FileSystem.lstatIfPresent(claim) != nil)

        let repaired = store.verifyAll(repair: true)
        #expect(repaired.staleLocks.count == 2)
        #expect(try lockDirectoryNames(store) == ["fresh-remote.lock", "live.lock"])

        try plantLock(store, key: "dead-remote", owner: remoteOwner(), secondsAgo: 3600)
        let gc = try store.collectGarbage(keepingKeys: [])
        #expect(gc.removedLocks == 1)
        #expect(try lockDirectoryNames(store) == ["fresh-remote.lock", "live.lock"])
        #expect(live.isHeld)
        live.release()
    }

    @Test func anotherHostsStagingAreaIsLeftToGarbageCollection() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let first = try ContentStore(root: root)
        #expect(first.privateTemporary.hasSuffix("@" + ProcessIdentity.current.fileNameHost))
        // Unlocked, as another node's live staging area looks where flock does not cross NFS clients.
        let remote = root + "/tmp/4242-0123abcd@other-node.invalid"
        let ownDead = root + "/tmp/4242-0123abcd@" + ProcessIdentity.current.fileNameHost
        for path in [remote, ownDead] {
            try FileSystem.makeDirectories(path + "/stage-out-1")
            try storeTestCreateFile(atPath: path + "/.lock", contents: Data())
        }
        let second = try ContentStore(root: root)
        #expect(try FileSystem.lstatIfPresent(remote) != nil)
        #expect(try FileSystem.lstatIfPresent(ownDead) == nil)
        #expect(try FileSystem.lstatIfPresent(second.privateTemporary) != nil)
    }

    @Test func garbageCollectionRemovesDeadStagingAreasOfEveryHost() throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let store = try ContentStore(root: root)
        let remote = root + "/tmp/4242-0123abcd@other-node.invalid"
        try FileSystem.makeDirectories(remote + "/stage-out-1")
        try storeTestCreateFile(atPath: remote + "/.lock", contents: Data())
        _ = try store.collectGarbage(keepingKeys: [])
        #expect(try FileSystem.lstatIfPresent(remote) == nil)
        #expect(try FileSystem.lstatIfPresent(store.privateTemporary) != nil)
    }

    @Test func lockTimingComesFromTheEnvironment() throws {
        #expect(try LockTiming.fromEnvironment([:]) == .standard)
        let timing = try LockTiming.fromEnvironment(["SQUEEZE_LOCK_HEARTBEAT_SECONDS": "2.5", "SQUEEZE_LOCK_STALE_SECONDS": " 30 "])
        #expect(timing.heartbeatSeconds == 2.5 && timing.staleAfterSeconds == 30)
        for bad in ["0", "-1", "soon", "nan", "inf"] {
            let error = try #require(throws: UserError.self) { try LockTiming.fromEnvironment(["SQUEEZE_LOCK_STALE_SECONDS": bad]) }
            #expect(error.message.contains("SQUEEZE_LOCK_STALE_SECONDS"))
        }
    }

    @Test func identicalContentIngestedAndSavedConcurrentlyByTwoStoresStaysValid() async throws {
        let directory = try StoreTestDirectory()
        let root = directory.path + "/.squeeze"
        let stores = try (0..<2).map { _ in try ContentStore(root: root) }
        // Each writer stages its own copy of the same tree, as two hosts computing one stage would.
        let writers = 8
        for writer in 0..<writers {
            for file in 0..<40 { try directory.write("w\(writer)/out/f\(file).txt", String(repeating: "line \(file)\n", count: 200)) }
            try directory.write("w\(writer)/out/big.bin", [UInt8]((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        }
        let entryPath = stores[0].entryPath("same-key")
        let reading = Flag()
        let counts = Counts()
        let readerStopped = DispatchSemaphore(value: 0)
        Thread {
            while reading.value.load(ordering: .relaxed) {
                if let bytes = try? FileSystem.readFileIfPresent(entryPath),
                   (try? SqueezeJSON.decode(StageEntry.self, from: bytes)) == nil {
                    counts.overlaps.add(1, ordering: .relaxed)
                }
            }
            readerStopped.signal()
        }.start()
        // Writers on threads of their own: ingest is synchronous and would hold the cooperative pool.
        let results = Mutex<[Result<ArtifactRef, any Error>]>([])
        let done = DispatchGroup()
        for writer in 0..<writers {
            let store = stores[writer % 2]
            let source = directory.path + "/w\(writer)/out"
            done.enter()
            Thread {
                let result = Result { () throws -> ArtifactRef in
                    let ref = try store.ingest(source)
                    try store.save(storeTestEntry(key: "same-key", outputs: ["out": ref]))
                    return ref
                }
                results.withLock { $0.append(result) }
                done.leave()
            }.start()
        }
        await withCheckedContinuation { continuation in done.notify(queue: .global()) { continuation.resume() } }
        let refs = try results.withLock { $0 }.map { try $0.get() }
        reading.value.store(false, ordering: .relaxed)
        readerStopped.wait()
        #expect(refs.count == writers && Set(refs.map(\.digest)).count == 1)
        #expect(counts.overlaps.load(ordering: .relaxed) == 0, "partial reads of the entry")
        let entry = try #require(stores[1].entry(forKey: "same-key"))
        #expect(entry.outputs["out"] == refs[0])
        #expect(stores[0].verifyAll().isClean)
        let tree = try stores[1].path(for: refs[0])
        #expect(try FileSystem.readFile(tree + "/f3.txt") == Array(String(repeating: "line 3\n", count: 200).utf8))
    }
}

private final class Counts: Sendable {
    let inside = Atomic<Int>(0)
    let overlaps = Atomic<Int>(0)
}

private final class Flag: Sendable {
    let value = Atomic<Bool>(true)
}

/// A lock owner on a host that is not this one.
private func remoteOwner(heartbeatSeconds: Double = 0.1) -> LockOwner {
    LockOwner(
        host: "other-node.invalid", pid: 4242, bootID: "00000000-0000-0000-0000-000000000000",
        pidNamespace: "pid:[1]", processStart: 100, createdAt: Date(), heartbeatSeconds: heartbeatSeconds, token: "remote-token")
}

/// Writes `locks/<key>.lock` for `owner` as if it held the key, with its
/// heartbeat (mtime) `secondsAgo` in the past.
private func plantLock(_ store: ContentStore, key: String, owner: LockOwner, secondsAgo: Int) throws {
    let path = store.lockPath(key)
    try storeTestCreateFile(atPath: path, contents: Data(try SqueezeJSON.encode(owner)))
    let now = Date().timeIntervalSince1970
    try storeTestSetMtime(path, seconds: Int(now) - secondsAgo, nanoseconds: Int((now - now.rounded(.down)) * 1e9))
}

private func currentOwner(_ store: ContentStore, key: String) throws -> LockOwner? {
    guard let bytes = try FileSystem.readFileIfPresent(store.lockPath(key)) else { return nil }
    return try SqueezeJSON.decode(LockOwner.self, from: bytes)
}

private func lockDirectoryNames(_ store: ContentStore) throws -> [String] {
    try FileSystem.listDirectory(store.root + "/locks").filter { !$0.hasPrefix(".") }.sorted()
}

/// The lock, or nil when it was not acquired within `seconds` (the waiter is cancelled).
private func lockWithin(_ store: ContentStore, key: String, seconds: Double) async throws -> StoreLock? {
    let waiter = Task { try await store.lock(key: key) }
    let canceller = Task {
        try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
        waiter.cancel()
    }
    defer { canceller.cancel() }
    do {
        return try await waiter.value
    } catch is CancellationError {
        return nil
    }
}
