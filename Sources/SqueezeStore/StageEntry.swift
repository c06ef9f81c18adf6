import Foundation
import SqueezeSupport

/// One action-cache record, `stages/<key>.json`: what a stage key produced.
public struct StageEntry: Sendable, Codable, Equatable {
    /// The stage's cache key; also the entry's file name.
    public var key: String
    /// The stage type (`uses:`), e.g. `prune/cofi`.
    public var stageType: String
    public var stageVersion: Int
    /// Output name → stored artifact.
    public var outputs: [String: ArtifactRef]
    public var metrics: [String: Value]
    public var createdAt: Date
    public var wallSeconds: Double
    public var cpuSeconds: Double
    /// The recipe and stage id that first produced the entry (informational:
    /// any recipe with the same key reuses it).
    public var recipeName: String
    public var stageID: String
    public var formatVersion: Int

    public init(
        key: String, stageType: String, stageVersion: Int, outputs: [String: ArtifactRef], metrics: [String: Value],
        createdAt: Date, wallSeconds: Double, cpuSeconds: Double, recipeName: String, stageID: String, formatVersion: Int
    ) {
        self.key = key
        self.stageType = stageType
        self.stageVersion = stageVersion
        self.outputs = outputs
        self.metrics = metrics
        self.createdAt = createdAt
        self.wallSeconds = wallSeconds
        self.cpuSeconds = cpuSeconds
        self.recipeName = recipeName
        self.stageID = stageID
        self.formatVersion = formatVersion
    }

    /// Stage keys become file names, so they are restricted to letters,
    /// digits, `.`, `_` and `-`, do not start with `.` and are at most 200 bytes.
    static func isValidKey(_ key: String) -> Bool {
        guard !key.isEmpty, key.utf8.count <= 200, !key.hasPrefix(".") else { return false }
        return key.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }
}

/// What `ContentStore.verifyAll` found.
public struct VerifyReport: Sendable {
    public var checkedObjects: Int
    public var checkedTrees: Int
    public var checkedEntries: Int
    /// One line per problem: the path and what is wrong with it.
    public var problems: [String]
    /// Lock files whose holder is gone ("path: why"). Not problems: the next
    /// process to want the key takes such a lock over; `repair` removes them.
    public var staleLocks: [String]
    public var isClean: Bool { problems.isEmpty }

    public init(
        checkedObjects: Int = 0, checkedTrees: Int = 0, checkedEntries: Int = 0, problems: [String] = [], staleLocks: [String] = []
    ) {
        self.checkedObjects = checkedObjects
        self.checkedTrees = checkedTrees
        self.checkedEntries = checkedEntries
        self.problems = problems
        self.staleLocks = staleLocks
    }
}

/// What `ContentStore.collectGarbage` removed.
public struct GCReport: Sendable {
    public var removedEntries: Int
    /// Blobs and trees removed.
    public var removedObjects: Int
    public var removedBytes: Int64
    public var keptEntries: Int
    /// Stale lock files removed (locks of dead holders, leftover claims).
    public var removedLocks: Int
    /// Resumable areas removed (`removeOrphanedResumableAreas`); their bytes are in `removedBytes`.
    public var removedResumableAreas: Int

    public init(
        removedEntries: Int = 0, removedObjects: Int = 0, removedBytes: Int64 = 0, keptEntries: Int = 0, removedLocks: Int = 0,
        removedResumableAreas: Int = 0
    ) {
        self.removedResumableAreas = removedResumableAreas
        self.removedEntries = removedEntries
        self.removedObjects = removedObjects
        self.removedBytes = removedBytes
        self.keptEntries = keptEntries
        self.removedLocks = removedLocks
    }
}
