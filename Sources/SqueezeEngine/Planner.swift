import Foundation
import SqueezeStore

/// What `squeeze plan` says about one stage.
public struct StagePlan: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        /// Must execute; `reason` says why.
        case run
        /// An intact cache entry exists for its key.
        case cached
        /// Depends on a stage that must run first; whether it reruns is decided
        /// by that stage's output (identical output means a cache hit).
        case blocked
        /// Not selected by `--only`.
        case skipped
    }

    public var id: String
    public var uses: String
    public var status: Status
    public var reason: String
    /// The stage key when it can be computed now.
    public var key: String?
    public var dependencies: [String]
}

extension Pipeline {
    /// Plans every stage without running anything or hashing store objects
    /// (inputs from the workspace are hashed, through the stat cache). A stage
    /// type's `keyedContent` hook may fetch what an unpinned parameter stands
    /// for (a `pip:` wheel) to key it; that is dropped when the plan is made.
    public func plan(force: Set<String> = [], only: Set<String>? = nil) throws -> [StagePlan] {
        let selected = only.map { closure(of: $0) }
        let scratch = KeyedContentScratch(store: store)
        defer { scratch.removeAll() }
        var outputs: [String: [String: ArtifactRef]] = [:]
        var statuses: [String: StagePlan.Status] = [:]
        var plans: [StagePlan] = []
        for id in order {
            let spec = try spec(id)
            var plan = StagePlan(id: id, uses: spec.uses, status: .run, reason: "", key: nil, dependencies: spec.dependencies)
            defer {
                statuses[id] = plan.status
                plans.append(plan)
            }
            if let selected, !selected.contains(id) {
                plan.status = .skipped
                plan.reason = "not selected by --only"
                continue
            }
            let waiting = spec.dependencies.filter { statuses[$0] == .run || statuses[$0] == .blocked }
            if !waiting.isEmpty {
                plan.status = .blocked
                plan.reason = "waits for " + waiting.map { "`\($0)`" }.joined(separator: ", ")
                continue
            }
            let missing = spec.dependencies.filter { statuses[$0] == .skipped }
            if !missing.isEmpty {
                plan.status = .blocked
                plan.reason = "needs " + missing.map { "`\($0)`" }.joined(separator: ", ") + ", which is not selected"
                continue
            }
            let material: KeyMaterial
            do {
                material = try stageKey(for: spec, upstream: upstreamOutputs(of: spec, in: { outputs[$0] }), scratch: scratch).material
            } catch {
                throw StageFailure("stage `\(id)`: \(error)")
            }
            plan.key = material.key
            if force.contains(id) {
                plan.reason = "forced"
                continue
            }
            if let entry = store.entry(forKey: material.key), let stored = validOutputs(of: entry, for: spec, verify: false) {
                plan.status = .cached
                outputs[id] = stored
                continue
            }
            plan.reason = explanation(for: id, material: material)
        }
        return plans
    }

    /// Why a stage with no usable entry must run, compared with what it last ran with.
    func explanation(for id: String, material: KeyMaterial) -> String {
        guard let previous = lastMaterial(for: id) else { return "no cache entry" }
        let changes = material.changes(since: previous)
        if changes.isEmpty { return "no cache entry (removed or garbage-collected)" }
        return changes.joined(separator: "; ")
    }
}
