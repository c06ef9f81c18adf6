// Load (RecipeLoader.load) + open the store + Pipeline.plan() of a generated
// 1,000-stage recipe, with a fully warm cache (every stage cached) and a cold
// one (every stage run or blocked). Goal: under 1 s each.
import Benchmark
import BenchmarkSupport
import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeStore
import SqueezeTensor

let suite = "Planning"
let stageCount = 1_000
let layerCount = 20

/// A layered DAG of `command` stages: `layerCount` layers of equal width; each
/// stage past the first layer reads the output of one stage in the layer just
/// before it and of up to two more in any earlier layer (1–3 references), so
/// keys chain through the whole graph. Deterministic (fixed-seed xorshift).
func generatedRecipe() -> String {
    let width = stageCount / layerCount
    func id(_ index: Int) -> String { "s\(String(format: "%04d", index))" }
    var state: UInt64 = 0x5EED_0000_0000_0001
    func next(_ bound: Int) -> Int {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Int(state % UInt64(bound))
    }
    var lines = [
        "version: 1",
        "name: planning-benchmark",
        "description: \(stageCount) command stages in \(layerCount) layers",
        "stages:",
    ]
    for index in 0..<stageCount {
        let layer = index / width
        var upstream: [Int] = []
        if layer > 0 {
            upstream.append((layer - 1) * width + next(width))
            let extra = next(3)
            for _ in 0..<extra {
                let candidate = next(layer * width)
                if !upstream.contains(candidate) { upstream.append(candidate) }
            }
        }
        let arguments = ["true", "--stage=\(id(index))"] + upstream.sorted().map { "${\(id($0)).out}" }
        lines.append("  \(id(index)):")
        lines.append("    uses: command")
        lines.append("    with:")
        lines.append("      run: [" + arguments.map { "\"\($0)\"" }.joined(separator: ", ") + "]")
    }
    return lines.joined(separator: "\n") + "\n"
}

struct Fixture {
    /// The built-in stage types on the built-in backends, as the CLI registers them.
    static let stages = BuiltinStages.registry(backends: .builtin)
    let directory: ScratchDirectory
    let recipePath: String
    let cachePath: String

    /// Writes the recipe; for a warm fixture, runs it once with the real
    /// engine so every stage has a cache entry.
    static func make(warm: Bool) async throws -> Fixture {
        let directory = try ScratchDirectory(label: warm ? "planning-warm" : "planning-cold")
        let fixture = Fixture(
            directory: directory, recipePath: directory.appending("recipe.yaml"),
            cachePath: directory.appending(".squeeze"))
        try AtomicWrite.write(Data(generatedRecipe().utf8), to: fixture.recipePath)
        if warm {
            let pipeline = try fixture.pipeline(recipe: fixture.load())
            let options = RunOptions(
                jobs: ProcessInfo.processInfo.activeProcessorCount,
                cores: ProcessInfo.processInfo.activeProcessorCount, squeezeVersion: "benchmark")
            let record = try await pipeline.run(
                options: options, runs: RunStore(root: directory.appending("runs")), observer: SilentObserver())
            let failed = record.stages.filter { $0.status != .ran && $0.status != .cached }
            guard failed.isEmpty else {
                throw FixtureFailure(description: "populating the cache failed: \(failed.prefix(3).map { "\($0.id): \($0.status) \($0.reason ?? "")" })")
            }
        }
        return fixture
    }

    func load() throws -> Recipe {
        try RecipeLoader.load(
            file: recipePath, stageTypes: Self.stages.descriptors, environment: [:],
            backends: BackendRegistry.builtin.recipeBackends)
    }

    func pipeline(recipe: Recipe) throws -> Pipeline {
        Pipeline(
            recipe: recipe, registry: Self.stages, store: try ContentStore(root: cachePath),
            environment: [:])
    }
}

struct FixtureFailure: Error, CustomStringConvertible {
    let description: String
}

struct SilentObserver: RunObserver {
    func handle(_ event: RunEvent) {}
}

/// One measured case: samples of the total and of its two parts.
struct Case {
    let total: Samples
    let load: Samples
    let plan: Samples
    /// Checks the plan is what the case claims (all cached, or none).
    let expectation: @Sendable ([StagePlan]) -> String?

    init(_ name: String, expectation: @escaping @Sendable ([StagePlan]) -> String?) {
        let details = ["stages": String(stageCount), "layers": String(layerCount)]
        total = Samples(suite: suite, name: name, unit: "s", details: details)
        load = Samples(suite: suite, name: "\(name)-load", unit: "s", details: details)
        plan = Samples(suite: suite, name: "\(name)-plan", unit: "s", details: details)
        self.expectation = expectation
    }

    func measure(_ benchmark: Benchmark, _ fixture: Fixture) throws {
        let (recipe, loadSeconds) = try secondsElapsed { try fixture.load() }
        let (plans, planSeconds) = try secondsElapsed { try fixture.pipeline(recipe: recipe).plan() }
        if let problem = expectation(plans) { throw FixtureFailure(description: problem) }
        blackHole(plans)
        benchmark.measurement(loadMetric, Int((loadSeconds * 1e6).rounded()))
        benchmark.measurement(planMetric, Int((planSeconds * 1e6).rounded()))
        guard benchmark.currentIteration >= benchmark.configuration.warmupIterations else { return }
        try total.add(loadSeconds + planSeconds)
        try load.add(loadSeconds)
        try plan.add(planSeconds)
    }
}

func count(_ plans: [StagePlan], _ status: StagePlan.Status) -> Int {
    plans.filter { $0.status == status }.count
}

let warmCase = Case("warm") { plans in
    let cached = count(plans, .cached)
    return cached == stageCount ? nil : "warm plan: \(cached) of \(stageCount) stages cached"
}

let coldCase = Case("cold") { plans in
    let run = count(plans, .run), blocked = count(plans, .blocked)
    return run == stageCount / layerCount && run + blocked == stageCount
        ? nil : "cold plan: \(run) run, \(blocked) blocked of \(stageCount)"
}

let loadMetric = BenchmarkMetric.custom("load (µs)", useScalingFactor: false)
let planMetric = BenchmarkMetric.custom("open store + plan (µs)", useScalingFactor: false)

/// Short runs: one warm-up iteration, then a few measured ones.
func configuration() -> Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .peakMemoryResident, loadMetric, planMetric],
        timeUnits: .milliseconds,
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: .seconds(30),
        maxIterations: 10
    )
}

let benchmarks: @Sendable () -> Void = {
    Benchmark(
        "load + plan 1000 stages: warm cache (all cached)",
        configuration: configuration(),
        closure: { (benchmark: Benchmark, fixture: Fixture) throws in try warmCase.measure(benchmark, fixture) },
        setup: { try await Fixture.make(warm: true) },
        teardown: { ScratchDirectory.removeAll() }
    )

    Benchmark(
        "load + plan 1000 stages: cold cache (run/blocked)",
        configuration: configuration(),
        closure: { (benchmark: Benchmark, fixture: Fixture) throws in try coldCase.measure(benchmark, fixture) },
        setup: { try await Fixture.make(warm: false) },
        teardown: { ScratchDirectory.removeAll() }
    )
}
