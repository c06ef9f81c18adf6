import Foundation
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport

extension KeyMaterial {
    /// The key of this material with the backend left out: the same for a
    /// stage computed by any backend or arithmetic. It keys the remote
    /// cache's variant index, which maps each backend fingerprint to the key
    /// its entry has, so a miss can say that only another arithmetic has one.
    public var keyWithoutBackend: String {
        guard case .object(var fields) = canonicalValue else { return key }
        fields["backend"] = nil
        return Hashing.sha256(Data(Value.object(fields).canonicalJSON.utf8)).hex
    }
}

/// What the remote cache holds for a stage whose local entry is missing.
enum RemoteFinding: Sendable {
    /// The entry for the stage's key, with every declared output.
    case entry(StageEntry)
    /// No entry for this key, but entries computed with these other backend fingerprints.
    case otherBackends([String])
    case none
}

/// What `squeeze cache push` and `pull` moved.
public struct RemoteTransferReport: Sendable {
    /// Entries sent or fetched.
    public var entries = 0
    /// Entries the other side had already (pull: local hits).
    public var alreadyThere = 0
    /// Stages with nothing to move: not in the remote cache (pull), gone from the local cache (push).
    public var unavailable: [String] = []
    public var transfer = RemoteCache.Transfer()
    /// One line per problem (the remote turned off, a corrupt object).
    public var warnings: [String] = []

    public init() {}
}

extension Pipeline {
    /// The note a stale stage gets when only other backends have remote entries.
    static func otherBackendsNote(_ fingerprints: [String]) -> String {
        let noun = fingerprints.count == 1 ? "fingerprint" : "fingerprints"
        return "remote entry for another backend \(noun) (\(fingerprints.joined(separator: ", "))); recomputing"
    }

    /// Looks the stage up in the remote cache: its entry, else the backends
    /// that have one for the same key material. A server failure turns the
    /// remote off with one warning; any other failure is a warning and a miss.
    func remoteFinding(for material: KeyMaterial, spec: StageSpec, warn: (String) -> Void) async -> RemoteFinding {
        guard let remote, remote.disabledReason == nil else { return .none }
        do {
            if let entry = try await remote.entry(forKey: material.key) {
                let declared = (try? stageType(of: spec))?.descriptor.outputs.map(\.name) ?? []
                if let absent = declared.first(where: { entry.outputs[$0] == nil }) {
                    warn("remote entry \(material.key) of `\(spec.id)` lacks output `\(absent)`; not used")
                    return .none
                }
                return .entry(entry)
            }
            let variants = try await remote.variants(forKey: material.keyWithoutBackend)
            let others = variants.filter { $0.value != material.key && $0.key != material.backend }.keys.sorted()
            return others.isEmpty ? .none : .otherBackends(others)
        } catch {
            Self.reportRemoteFailure(error, of: remote, for: spec.id, warn: warn)
            return .none
        }
    }

    /// A remote failure as a warning; one that concerns the whole server
    /// turns the remote off for the rest of this process (warned once).
    static func reportRemoteFailure(_ error: any Error, of remote: RemoteCache, for stageID: String, warn: (String) -> Void) {
        if error is CancellationError || Task.isCancelled { return }
        if RemoteCache.isUploadRefusal(error) {
            if remote.disableUploads(because: "\(error)") {
                warn("remote cache \(remote.displayURL) refuses uploads (\(error)); reading only for the rest of this run")
            }
        } else if RemoteCache.isServerFailure(error) {
            if remote.disable(because: "\(error)") {
                warn("remote cache \(remote.displayURL) is not usable (\(error)); continuing with the local cache only for the rest of this run")
            }
        } else {
            warn("remote cache, stage `\(stageID)`: \(error)")
        }
    }

    /// Read-through for the runner, under the key's lock after a local miss:
    /// the remote entry fetched into the local store (every object verified),
    /// or nil and a note for the miss's reason.
    func readThroughRemote(
        key: String, spec: StageSpec, material: KeyMaterial, observer: any RunObserver
    ) async -> (entry: StageEntry?, note: String?) {
        guard let remote else { return (nil, nil) }
        let warn: (String) -> Void = { observer.handle(.warning($0)) }
        switch await remoteFinding(for: material, spec: spec, warn: warn) {
        case .none:
            return (nil, nil)
        case .otherBackends(let fingerprints):
            return (nil, Self.otherBackendsNote(fingerprints))
        case .entry(let entry):
            do {
                try await remote.fetch(entry, into: store)
            } catch {
                Self.reportRemoteFailure(error, of: remote, for: spec.id, warn: warn)
                return (nil, error is RemoteCacheError ? "remote entry not usable; recomputing" : nil)
            }
            guard let verified = cachedEntry(key: key, spec: spec) else { return (nil, nil) }
            return (verified, nil)
        }
    }

    /// Write-through after a stage ran and its entry was saved: the outputs,
    /// the entry, then the variant index. A failure is a warning only.
    func writeThroughRemote(_ entry: StageEntry, material: KeyMaterial, observer: any RunObserver) async {
        guard let remote, remote.uploadsDisabledReason == nil else { return }
        do {
            try await remote.upload(entry, from: store)
            try await remote.recordVariant(material.backend, key: entry.key, under: material.keyWithoutBackend)
        } catch {
            Self.reportRemoteFailure(error, of: remote, for: entry.stageID, warn: { observer.handle(.warning($0)) })
        }
    }

    /// `plan` with the remote cache consulted for every stage the local cache
    /// cannot supply (one `GET` of its entry, and of the variant index on a
    /// miss). A stage found remotely is `remote`, and its outputs key the
    /// stages after it. Also returns the entries found, by stage id.
    func planConsultingRemote(
        force: Set<String>, only: Set<String>?, warn: (String) -> Void
    ) async throws -> (plans: [StagePlan], found: [String: StageEntry]) {
        var planning = Planning(pipeline: self, force: force, only: only)
        defer { planning.scratch.removeAll() }
        var found: [String: StageEntry] = [:]
        for id in order {
            guard let stale = try planning.planLocally(id) else { continue }
            switch await remoteFinding(for: stale.material, spec: stale.spec, warn: warn) {
            case .entry(let entry):
                planning.markRemote(stale, outputs: entry.outputs)
                found[id] = entry
            case .otherBackends(let fingerprints):
                planning.addNote(Self.otherBackendsNote(fingerprints), to: stale)
            case .none:
                break
            }
        }
        return (planning.plans, found)
    }

    /// `plan`, consulting the remote cache when there is one.
    public func plan(force: Set<String> = [], only: Set<String>? = nil, warn: (String) -> Void) async throws -> [StagePlan] {
        guard remote != nil else { return try plan(force: force, only: only) }
        return try await planConsultingRemote(force: force, only: only, warn: warn).plans
    }

    /// `squeeze cache pull`: every stage entry of the plan that the remote
    /// cache has and the local cache lacks, fetched with its outputs.
    public func pullFromRemote() async throws -> RemoteTransferReport {
        var report = RemoteTransferReport()
        guard let remote else { return report }
        let (plans, found) = try await planConsultingRemote(force: [], only: nil, warn: { report.warnings.append($0) })
        for plan in plans {
            switch plan.status {
            case .cached:
                report.alreadyThere += 1
            case .remote:
                guard let entry = found[plan.id] else { continue }
                do {
                    report.transfer += try await remote.fetch(entry, into: store)
                    report.entries += 1
                } catch {
                    Self.reportRemoteFailure(error, of: remote, for: plan.id, warn: { report.warnings.append($0) })
                    report.unavailable.append(plan.id)
                }
            case .run, .blocked:
                report.unavailable.append(plan.id)
            case .skipped:
                break
            }
        }
        return report
    }

    /// `squeeze cache push`: the entries and outputs of every stage a run
    /// produced or reused, with the variant index where the store's last-run
    /// index still has the stage's key material.
    public static func pushToRemote(_ run: RunRecord, store: ContentStore, remote: RemoteCache) async -> RemoteTransferReport {
        var report = RemoteTransferReport()
        let index = indexDirectory(recipeFile: run.recipeFile, storeRoot: store.root)
        for stage in run.stages where stage.status == .ran || stage.status == .cached {
            guard remote.uploadsDisabledReason == nil else {
                report.unavailable.append(stage.id)
                continue
            }
            guard let key = stage.key, let entry = store.entry(forKey: key) else {
                report.unavailable.append(stage.id)
                continue
            }
            do {
                if try await remote.hasEntry(forKey: key) {
                    report.alreadyThere += 1
                } else {
                    report.transfer += try await remote.upload(entry, from: store)
                    report.entries += 1
                }
                let materialPath = (index as NSString).appendingPathComponent("\(fileName(for: stage.id)).json")
                if let bytes = FileManager.default.contents(atPath: materialPath),
                   let material = try? SqueezeJSON.decode(KeyMaterial.self, from: bytes), material.key == key {
                    try await remote.recordVariant(material.backend, key: key, under: material.keyWithoutBackend)
                }
            } catch {
                if error is CancellationError || Task.isCancelled { break }
                reportRemoteFailure(error, of: remote, for: stage.id, warn: { report.warnings.append($0) })
                report.unavailable.append(stage.id)
            }
        }
        return report
    }
}
