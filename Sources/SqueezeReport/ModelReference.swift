import SqueezeEngine
import SqueezeSupport

/// Which model artifact an eval stage scored under a name, read from the run
/// record: the recorded recipe gives the stage's `with.models.<name>` as
/// written (`${pretrain.model}`), and the producing stage's record gives that
/// output's content digest and size. Two rows of one run with the same
/// identity evaluated the same bytes.
struct ModelReference: Sendable, Equatable {
    enum Identity: Sendable, Hashable {
        /// A stage output, by content digest.
        case artifact(digest: String)
        /// A literal path (not a `${stage.output}` reference), as written:
        /// within one run a path stands for one content.
        case path(String)
    }

    var identity: Identity
    /// The stage instance whose output it is; nil for a literal path.
    var producer: String?
    /// Bytes of the stored artifact (every file of a model directory).
    var storedBytes: Double?

    /// The content digest, for a stage output.
    var artifact: String? {
        if case .artifact(let digest) = identity { return digest }
        return nil
    }

    /// The model `name` of the eval stage `stage`; nil when the recipe does not
    /// say or the reference does not lead to a recorded output.
    static func resolve(_ name: String, of stage: StageRecord, in run: RunRecord) -> ModelReference? {
        let spec = recipeStage(stage.id, in: run.recipe)
        guard let written = spec?[member: "with"]?[member: "models"]?[member: name]?.string else { return nil }
        guard written.contains("${") else { return ModelReference(identity: .path(written), producer: nil, storedBytes: nil) }
        guard let (head, output) = stageOutput(written),
              let producer = producingStage(head, dependencies: spec?[member: "dependencies"], in: run),
              let artifact = producer.outputs[output]
        else { return nil }
        return ModelReference(identity: .artifact(digest: artifact.digest.hex), producer: producer.id, storedBytes: Double(artifact.size))
    }

    /// The recorded recipe's entry for a stage instance; a sweep instance
    /// `eval[sparsity=0.8]` recorded under its base id `eval` is found too.
    static func recipeStage(_ id: String, in recipe: Value) -> Value? {
        let stages = recipe[member: "stages"]
        return stages?[member: id] ?? stages?[member: baseID(id)]
    }

    /// `pretrain` and `model` from `${pretrain.model}`; nil unless the text is
    /// exactly one stage-output reference. Output names have no dots, stage
    /// instance ids may (`pruned[sparsity=0.5]`), so the last dot separates them.
    static func stageOutput(_ text: String) -> (stage: String, output: String)? {
        guard text.hasPrefix("${"), text.hasSuffix("}"), text.count > 3 else { return nil }
        let body = text.dropFirst(2).dropLast()
        guard !body.contains("$"), !body.contains("{"), !body.contains("}"), let dot = body.lastIndex(of: ".") else { return nil }
        let stage = String(body[..<dot]), output = String(body[body.index(after: dot)...])
        guard !stage.isEmpty, !output.isEmpty, !["vars", "env"].contains(stage) else { return nil }
        return (stage, output)
    }

    /// The stage a reference names: a recorded stage of that id, else the one
    /// upstream instance of that stage the evaluating stage depends on (a
    /// reference inside a sweep names the base id; one with a selector
    /// `pruned[method=wanda]` may order its bindings differently).
    static func producingStage(_ head: String, dependencies: Value?, in run: RunRecord) -> StageRecord? {
        if let stage = run.stages.first(where: { $0.id == head }) { return stage }
        guard case .array(let items) = dependencies else { return nil }
        let wanted = bindings(head)
        let candidates = items.compactMap(\.string).filter { id in
            baseID(id) == baseID(head) && (wanted.isEmpty || bindings(id) == wanted)
        }
        guard candidates.count == 1, let id = candidates.first else { return nil }
        return run.stages.first { $0.id == id }
    }

    static func baseID(_ id: String) -> String {
        id.split(separator: "[", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? id
    }

    /// `["method=wanda", "sparsity=0.5"]` of `pruned[sparsity=0.5, method=wanda]`.
    static func bindings(_ id: String) -> Set<String> {
        guard let open = id.firstIndex(of: "["), id.hasSuffix("]") else { return [] }
        let inside = id[id.index(after: open)..<id.index(before: id.endIndex)]
        return Set(inside.split(separator: ",").map { $0.filter { !$0.isWhitespace } })
    }

    /// Every stage upstream of `id` in the recorded recipe (its dependencies,
    /// theirs, and so on); a damaged record with a cycle ends the walk.
    static func ancestors(of id: String, in recipe: Value) -> Set<String> {
        var seen: Set<String> = []
        var pending = [id]
        while let next = pending.popLast() {
            guard case .array(let items)? = recipeStage(next, in: recipe)?[member: "dependencies"] else { continue }
            for dependency in items.compactMap(\.string) where seen.insert(dependency).inserted {
                pending.append(dependency)
            }
        }
        return seen
    }
}
