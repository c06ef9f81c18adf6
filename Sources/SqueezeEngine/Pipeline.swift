import Collections
import Foundation
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport
import SqueezeYAML

/// A validated recipe bound to the stage types, the store and the environment
/// it will run in. Planning and execution both go through it, so `squeeze plan`
/// and `squeeze run` can never disagree about a key.
public struct Pipeline: Sendable {
    public let recipe: Recipe
    public let registry: StageRegistry
    public let store: ContentStore
    public let environment: [String: String]
    /// Stage ids in execution order: dependencies first, ties in source order.
    public let order: [String]
    /// The shared cache read on a local miss and written after a stage runs
    /// (`Pipeline+Remote.swift`); nil: local cache only.
    public var remote: RemoteCache?

    public init(recipe: Recipe, registry: StageRegistry, store: ContentStore, environment: [String: String]) {
        self.recipe = recipe
        self.registry = registry
        self.store = store
        self.environment = environment
        self.order = Self.topologicalOrder(recipe)
    }

    /// Kahn's algorithm, taking the earliest stage in source order whenever
    /// several are ready. The loader has already rejected cycles; any stage
    /// left over (which cannot happen) is appended in source order.
    static func topologicalOrder(_ recipe: Recipe) -> [String] {
        let ids = Array(recipe.stages.keys)
        let index = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        var unmet = [Int](repeating: 0, count: ids.count)
        var dependents = [[Int]](repeating: [], count: ids.count)
        for (position, spec) in recipe.stages.values.enumerated() {
            for dependency in Set(spec.dependencies) {
                guard let upstream = index[dependency] else { continue }
                unmet[position] += 1
                dependents[upstream].append(position)
            }
        }
        var ready = Heap(ids.indices.filter { unmet[$0] == 0 })
        var order: [String] = []
        order.reserveCapacity(ids.count)
        while let next = ready.popMin() {
            order.append(ids[next])
            for dependent in dependents[next] {
                unmet[dependent] -= 1
                if unmet[dependent] == 0 { ready.insert(dependent) }
            }
        }
        if order.count < ids.count {
            let placed = Set(order)
            order += ids.filter { !placed.contains($0) }
        }
        return order
    }

    /// A stage's seed: derived from the recipe seed and the stage id, so stages
    /// draw independent random streams and reordering the recipe changes nothing.
    /// A matrix instance has its base stage's seed, so it shares cache entries
    /// with a plain run of the same values.
    public func seed(for stageID: String) -> UInt64 {
        let base = recipe.stages[stageID]?.baseID ?? stageID
        // The first 8 bytes of the SHA-256, big-endian (16 hex digits always parse).
        let digest = Hashing.sha256(Data("squeeze-seed:\(recipe.seed):\(base)".utf8))
        return UInt64(digest.hex.prefix(16), radix: 16) ?? 0
    }

    public func spec(_ id: String) throws -> StageSpec {
        guard let spec = recipe.stages[id] else { throw StageFailure("unknown stage `\(id)`") }
        return spec
    }

    public func stageType(of spec: StageSpec) throws -> StageType {
        guard let type = registry[spec.uses] else { throw StageFailure("unknown stage type `\(spec.uses)`") }
        return type
    }

    /// The stages `ids` need, transitively, plus `ids` themselves.
    public func closure(of ids: Set<String>) -> Set<String> {
        var selected = Set<String>()
        var stack = Array(ids)
        while let id = stack.popLast() {
            guard selected.insert(id).inserted, let spec = recipe.stages[id] else { continue }
            stack += spec.dependencies
        }
        return selected
    }

    /// The outputs of a stage's dependencies, by the stage ids its references
    /// name: a matrix instance's references name base stages, and each base
    /// stage stands for the instance of the same combination.
    func upstreamOutputs(
        of spec: StageSpec, in outputs: (_ stageID: String) -> [String: ArtifactRef]?
    ) -> [String: [String: ArtifactRef]] {
        var upstream: [String: [String: ArtifactRef]] = [:]
        for dependency in spec.dependencies {
            guard let produced = outputs(dependency) else { continue }
            upstream[recipe.stages[dependency]?.baseID ?? dependency] = produced
        }
        return upstream
    }

    /// Every `${stage.output}` a stage reads.
    func upstreamReferences(of spec: StageSpec) -> [Reference] {
        var seen = Set<Reference>()
        return spec.with.values.flatMap(\.references).filter { reference in
            if case .stageOutput = reference { return seen.insert(reference).inserted }
            return false
        }
    }

    /// A stage's key material, and where the content that keys its unpinned
    /// parameters was found (`StageContext.keyedContent`).
    struct StageKey {
        var material: KeyMaterial
        var keyedContent: [String: String]
    }

    /// Computes a stage's key material from the outputs of its dependencies;
    /// content a stage type's `keyedContent` hook fetches goes into `scratch`.
    func stageKey(
        for spec: StageSpec, upstream: [String: [String: ArtifactRef]], scratch: KeyedContentScratch
    ) throws -> StageKey {
        let type = try stageType(of: spec)
        var outputs: [Reference: ParameterResolver.UpstreamOutput] = [:]
        var inputs: [String: String] = [:]
        for reference in upstreamReferences(of: spec) {
            guard case .stageOutput(let stage, let output) = reference, let ref = upstream[stage]?[output] else {
                throw StageFailure("\(reference) was not produced by its stage")
            }
            outputs[reference] = .init(ref: ref, path: nil)
            inputs[reference.description] = ref.digest.description
        }
        let resolver = resolver(for: spec, upstream: outputs, outputDirectory: "", scratch: scratch)
        let resolved: ParameterResolver.KeyParameters
        do {
            resolved = try resolver.resolveForKey(spec, descriptor: type.descriptor)
        } catch let error as ParameterResolver.ResolutionError {
            throw StageFailure(error.description)
        }
        let backend = type.descriptor.usesTensorBackend ? registry.backendFingerprint(spec.backend) : spec.backend
        let material = KeyMaterial(
            formatVersion: KeyMaterial.currentFormatVersion, stageType: spec.uses,
            stageVersion: type.descriptor.version,
            params: KeyMaterial.keyedParameters(resolved.params, of: type.descriptor), inputs: inputs,
            backend: backend,
            seed: type.descriptor.seedUse.drawsSeed(resolver.selectedParameters(spec, descriptor: type.descriptor)) ? seed(for: spec.id) : nil)
        return StageKey(material: material, keyedContent: resolved.keyedContent)
    }

    func resolver(
        for spec: StageSpec, upstream: [Reference: ParameterResolver.UpstreamOutput], outputDirectory: String,
        scratch: KeyedContentScratch
    ) -> ParameterResolver {
        let store = self.store
        return ParameterResolver(
            upstream: upstream, environment: environment, recipeDirectory: recipe.directory,
            outputDirectory: outputDirectory, seed: seed(for: spec.id),
            digestOfPath: { try store.digest(ofPath: $0) },
            keyedContentScope: scratch.scope(recipeDirectory: recipe.directory))
    }

    /// Checks a cache entry still has every declared output, readable and intact.
    /// Returns the outputs, or nil when the entry must be recomputed.
    func validOutputs(of entry: StageEntry, for spec: StageSpec, verify: Bool) -> [String: ArtifactRef]? {
        guard let type = registry[spec.uses] else { return nil }
        for output in type.descriptor.outputs {
            guard let ref = entry.outputs[output.name] else { return nil }
            if verify {
                guard (try? store.path(for: ref)) != nil else { return nil }
            } else if !store.contains(ref) {
                return nil
            }
        }
        return entry.outputs
    }

    // MARK: Last-run index, for explaining why a stage reruns

    private var indexDirectory: String { Self.indexDirectory(recipeFile: recipe.file, storeRoot: store.root) }

    /// Where the last-run index of the recipe at `recipeFile` lives in the store at `storeRoot`.
    static func indexDirectory(recipeFile: String, storeRoot: String) -> String {
        let recipeID = Hashing.sha256(Data(recipeFile.utf8)).short
        return (storeRoot as NSString).appendingPathComponent("index/\(recipeID)")
    }

    /// The key material this recipe's stage last ran (or hit) with.
    func lastMaterial(for stageID: String) -> KeyMaterial? {
        let path = (indexDirectory as NSString).appendingPathComponent("\(Self.fileName(for: stageID)).json")
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? SqueezeJSON.decode(KeyMaterial.self, from: data)
    }

    func recordMaterial(_ material: KeyMaterial, for stageID: String) {
        let path = (indexDirectory as NSString).appendingPathComponent("\(Self.fileName(for: stageID)).json")
        guard let data = try? Data(SqueezeJSON.encode(material)) else { return }
        try? AtomicFile.write(data, to: path)
    }

    /// The longest file name `fileName(for:)` returns before it shortens one.
    static let maxFileNameBytes = 200

    /// A stage or matrix instance id (or an output name) as one file name,
    /// for logs, staging directories, `outputs/` links and the last-run index.
    ///
    /// The mapping is injective, so two ids never share a file: ASCII letters,
    /// digits and `-_.=,[]` are kept (`int8[observer=mse,sparsity=0.6]` stays
    /// readable), and every other UTF-8 byte, `%` itself included, is written
    /// `%XX` (`x/y` → `x%2Fy`, `x:y` → `x%3Ay`, `x_y` unchanged). A leading `.`
    /// is escaped too, so no name is hidden or `..`. A name longer than
    /// `maxFileNameBytes` is cut and ends in `~` and the digest of the whole id
    /// (`~` is never kept, so it cannot be mistaken for an unshortened name).
    static func fileName(for stageID: String) -> String {
        var name = ""
        for byte in stageID.utf8 {
            let scalar = Unicode.Scalar(byte)
            let kept = scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_.=,[]".unicodeScalars.contains(scalar))
            if kept, !(name.isEmpty && byte == UInt8(ascii: ".")) {
                name.unicodeScalars.append(scalar)
            } else {
                name += String(format: "%%%02X", byte)
            }
        }
        guard name.utf8.count > maxFileNameBytes else { return name }
        let digest = Hashing.sha256(Data(stageID.utf8)).short
        return String(name.prefix(maxFileNameBytes - digest.count - 1)) + "~" + digest
    }
}
