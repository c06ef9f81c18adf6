import Foundation
import SqueezeRecipe
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
        /// No local entry, but the remote cache has one for its key: `run`
        /// fetches it instead of computing (`squeeze plan --remote`).
        case remote
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
        var planning = Planning(pipeline: self, force: force, only: only)
        defer { planning.scratch.removeAll() }
        for id in order {
            _ = try planning.planLocally(id)
        }
        return planning.plans
    }

    /// The state of one planning pass, stage by stage in execution order, so
    /// that the plan with a remote cache (`Pipeline+Remote.swift`) can look a
    /// stage up between computing its key and deciding its status.
    struct Planning {
        let pipeline: Pipeline
        let force: Set<String>
        let selected: Set<String>?
        let scratch: KeyedContentScratch
        var outputs: [String: [String: ArtifactRef]] = [:]
        var statuses: [String: StagePlan.Status] = [:]
        var plans: [StagePlan] = []

        init(pipeline: Pipeline, force: Set<String>, only: Set<String>?) {
            self.pipeline = pipeline
            self.force = force
            self.selected = only.map { pipeline.closure(of: $0) }
            self.scratch = KeyedContentScratch(store: pipeline.store)
        }

        /// A stage the local cache cannot supply: it runs unless another
        /// cache has its entry (`plans[index]`, its key material).
        struct Stale {
            var index: Int
            var spec: StageSpec
            var material: KeyMaterial
        }

        /// Plans `id` from what is local; returns the stage when it is stale
        /// and not forced, so a caller may still find its entry elsewhere.
        mutating func planLocally(_ id: String) throws -> Stale? {
            let spec = try pipeline.spec(id)
            var plan = StagePlan(id: id, uses: spec.uses, status: .run, reason: "", key: nil, dependencies: spec.dependencies)
            defer {
                statuses[id] = plan.status
                plans.append(plan)
            }
            if let selected, !selected.contains(id) {
                plan.status = .skipped
                plan.reason = "not selected by --only"
                return nil
            }
            let waiting = spec.dependencies.filter { statuses[$0] == .run || statuses[$0] == .blocked }
            if !waiting.isEmpty {
                plan.status = .blocked
                plan.reason = "waits for " + waiting.map { "`\($0)`" }.joined(separator: ", ")
                return nil
            }
            let missing = spec.dependencies.filter { statuses[$0] == .skipped }
            if !missing.isEmpty {
                plan.status = .blocked
                plan.reason = "needs " + missing.map { "`\($0)`" }.joined(separator: ", ") + ", which is not selected"
                return nil
            }
            let material: KeyMaterial
            do {
                let outputs = self.outputs
                material = try pipeline.stageKey(
                    for: spec, upstream: pipeline.upstreamOutputs(of: spec, in: { outputs[$0] }), scratch: scratch).material
            } catch {
                throw StageFailure("stage `\(id)`: \(error)")
            }
            plan.key = material.key
            if force.contains(id) {
                plan.reason = "forced"
                return nil
            }
            if let entry = pipeline.store.entry(forKey: material.key), let stored = pipeline.validOutputs(of: entry, for: spec, verify: false) {
                plan.status = .cached
                outputs[id] = stored
                return nil
            }
            plan.reason = pipeline.explanation(for: id, material: material)
            return Stale(index: plans.count, spec: spec, material: material)
        }

        /// The stale stage's entry exists in the remote cache.
        mutating func markRemote(_ stale: Stale, outputs found: [String: ArtifactRef]) {
            plans[stale.index].status = .remote
            plans[stale.index].reason = ""
            statuses[stale.spec.id] = .remote
            outputs[stale.spec.id] = found
        }

        /// Adds what another cache said to a stale stage's reason.
        mutating func addNote(_ note: String, to stale: Stale) {
            plans[stale.index].reason += plans[stale.index].reason.isEmpty ? note : "; " + note
        }
    }

    /// Why a stage with no usable entry must run, compared with what it last ran with.
    func explanation(for id: String, material: KeyMaterial) -> String {
        guard let previous = lastMaterial(for: id) else { return "no cache entry" }
        let changes = material.changes(since: previous)
        if changes.isEmpty { return "no cache entry (removed or garbage-collected)" }
        return changes.joined(separator: "; ")
    }
}
