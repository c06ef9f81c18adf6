import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeStore
import Synchronization

/// A temporary project directory with a recipe, a cache and a runs folder.
struct Workspace {
    let root: String

    init() throws {
        root = (NSTemporaryDirectory() as NSString).appendingPathComponent("squeeze-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { (root as NSString).appendingPathComponent(name) }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path(name)))
    }

    func pipeline(_ yaml: String, overrides: [String] = [], matrix: [String] = [], registry: StageRegistry = testRegistry) throws -> Pipeline {
        try write("recipe.yaml", yaml)
        let recipe = try RecipeLoader.load(
            file: path("recipe.yaml"), stageTypes: registry.descriptors,
            overrides: try overrides.map { try Override.parse($0) } + matrix.map { try Override.parseMatrix($0) },
            environment: ProcessInfo.processInfo.environment, backends: testBackends)
        return Pipeline(recipe: recipe, registry: registry, store: try ContentStore(root: path(".squeeze")), environment: [:])
    }

    func run(_ pipeline: Pipeline, jobs: Int = 2, keepGoing: Bool = false, force: Set<String> = [], only: Set<String>? = nil) async throws -> RunRecord {
        try await pipeline.run(
            options: RunOptions(jobs: jobs, cores: 2, keepGoing: keepGoing, force: force, only: only, squeezeVersion: "test"),
            runs: RunStore(root: path("runs")), observer: EventCollector())
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// Collects run events for assertions.
final class EventCollector: RunObserver, Sendable {
    let events = Mutex<[RunEvent]>([])
    func handle(_ event: RunEvent) { events.withLock { $0.append(event) } }
}

extension RunRecord {
    func stage(_ id: String) -> StageRecord? { stages.first { $0.id == id } }
}
