import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SqueezeEngine
@testable import SqueezeReport
import SqueezeSupport
import Testing

/// Run records of decoder language models, shaped like what `eval/perplexity`
/// and `eval/generate` record, with the recorded recipe and stage outputs
/// that tie a model name to its artifact.
enum LanguageModelFixtures {
    static func digest(_ byte: String) -> String { "sha256:" + String(repeating: byte, count: 32) }

    /// A stage whose outputs are `output → (digest, bytes)`.
    static func producer(_ id: String, _ uses: String, outputs: [String: (digest: String, bytes: Int)]) throws -> StageRecord {
        var stage = Fixtures.stage(id, uses)
        let json = Value.object(outputs.mapValues { .object(["digest": .string($0.digest), "type": .string("directory"), "size": .int($0.bytes)]) })
        stage.outputs = try SqueezeJSON.decode(type(of: stage.outputs), from: Array(json.canonicalJSON.utf8))
        return stage
    }

    static func recipeStage(_ uses: String, models: [String: String] = [:], dependencies: [String], extra: [String: Value] = [:]) -> Value {
        var with = extra
        if !models.isEmpty { with["models"] = .object(models.mapValues(Value.string)) }
        return .object(["uses": .string(uses), "with": .object(with), "dependencies": .array(dependencies.map(Value.string))])
    }

    /// The recorded recipe of a wikitext-like pipeline: a pre-trained model,
    /// a Wanda-pruned instance of a sweep and a GPTQ int4 model made from it;
    /// `ppl` scores all three, `generate` runs the float and int4 models
    /// under other names and a model given by path.
    static let recipe: Value = .object([
        "stages": .object([
            "pretrain": recipeStage("train/causal-lm", dependencies: []),
            "pruned[method=wanda]": recipeStage("prune/oneshot", dependencies: ["pretrain"]),
            "gptq_int4": recipeStage("quantize/gptq", dependencies: ["pretrain"]),
            "ppl": recipeStage("eval/perplexity", models: [
                "dense": "${pretrain.model}", "wanda_50": "${pruned[method=wanda].model}", "gptq_int4_g128": "${gptq_int4.model}",
            ], dependencies: ["pretrain", "pruned[method=wanda]", "gptq_int4"]),
            "generate": recipeStage("eval/generate", models: [
                "fp32": "${pretrain.model}", "gptq_int4": "${gptq_int4.model}", "elsewhere": "/models/other",
            ], dependencies: ["pretrain", "gptq_int4"]),
        ]),
    ])

    static func perplexityMetrics(_ models: [(name: String, perplexity: Double, sparsity: Double, tokensPerSecond: Double)]) -> [String: Value] {
        var metrics: [String: Value] = ["split_tokens": .int(280_000), "seq_len": .int(128)]
        for model in models {
            metrics[model.name + ".perplexity"] = .double(model.perplexity)
            metrics[model.name + ".mean_nll"] = .double(log(model.perplexity))
            metrics[model.name + ".sparsity"] = .double(model.sparsity)
            metrics[model.name + ".parameters"] = .int(5_000_000)
            metrics[model.name + ".tokens_per_s"] = .double(model.tokensPerSecond)
        }
        return metrics
    }

    static func generateMetrics(_ models: [(name: String, decode: Double)]) -> [String: Value] {
        var metrics: [String: Value] = ["peak_rss_bytes": .int(400_000_000), "prompts": .int(2), "max_new_tokens": .int(48)]
        for model in models {
            metrics[model.name + ".prefill_tokens_per_s"] = .double(model.decode * 10)
            metrics[model.name + ".decode_tokens_per_s"] = .double(model.decode)
            metrics[model.name + ".kv_cache_bytes"] = .int(262_144)
            metrics[model.name + ".weights_bytes"] = .int(model.name == "fp32" ? 20_000_000 : 3_000_000)
        }
        return metrics
    }

    static func run() throws -> RunRecord {
        Fixtures.run(id: "20261207T100000Z-wikitext-llama-oneshot-0badcafe", stages: [
            try producer("pretrain", "train/causal-lm", outputs: ["model": (digest("aa"), 20_500_000)]),
            try producer("pruned[method=wanda]", "prune/oneshot", outputs: ["model": (digest("bb"), 14_000_000)]),
            try producer("gptq_int4", "quantize/gptq", outputs: ["model": (digest("cc"), 3_600_000)]),
            Fixtures.stage("ppl", "eval/perplexity", metrics: perplexityMetrics([
                ("dense", 30.0, 0, 2000), ("wanda_50", 33.0, 0.5, 2100), ("gptq_int4_g128", 30.9, 0, 900),
            ])),
            Fixtures.stage("generate", "eval/generate", metrics: generateMetrics([("fp32", 100), ("gptq_int4", 160), ("elsewhere", 200)])),
        ], recipe: recipe)
    }

    static let hostile = "<script>alert('x')</script> & \"q\""

    /// The report.json `eval/generate` writes for `run()`'s generate stage.
    static let generateReport: Value = .object([
        "fp32": .object([
            "samples": .array([
                sample(" = Robert Boulter = \n", " is an English actor .\nHe had a guest role"),
                sample(" The game 's battle system", " " + hostile),
            ]),
            "quantization": .null,
        ]),
        "gptq_int4": .object([
            "samples": .array([
                sample(" = Robert Boulter = \n", " is an English film actor ."),
                sample(" The game 's battle system", " was praised"),
            ]),
            "quantization": .string("weight_only int4 g128, 28 quantized Linear modules"),
        ]),
        "sampling": .object([
            "temperature": .double(0), "top_k": .int(0), "top_p": .double(1), "max_new_tokens": .int(48), "stop_at_eos": .bool(false),
        ]),
    ])

    static func sample(_ prompt: String, _ continuation: String) -> Value {
        .object([
            "prompt": .string(prompt), "prompt_tokens": .int(7), "continuation": .string(continuation),
            "tokens": .array((0..<5).map(Value.int)), "stopped_at_eos": .bool(false),
        ])
    }

    static let perplexityReport: Value = .object([
        "gptq_int4_g128": .object(["perplexity": .double(30.9), "quantization": .string("weight_only int4 g128, 28 quantized Linear modules")]),
        "dense": .object(["perplexity": .double(30.0)]),
    ])

    /// Reads the stage reports above, as the CLI reads them from the store.
    static func read(_ stage: StageRecord, _ output: String) throws -> Data {
        switch (stage.uses, output) {
        case ("eval/generate", "report"): Data(generateReport.prettyJSON.utf8)
        case ("eval/perplexity", "report"): Data(perplexityReport.canonicalJSON.utf8)
        default: throw CocoaError(.fileNoSuchFile)
        }
    }
}

@Suite struct LanguageModelReportTests {
    @Test func perplexityRowsWithTheGeneratedMeasurementsOfTheSameArtifact() throws {
        let report = RunReport(try LanguageModelFixtures.run())
        #expect(report.models.map(\.label) == ["dense", "gptq_int4_g128", "wanda_50", "elsewhere"])
        #expect(report.models.allSatisfy { $0.isLanguageModel })
        let dense = try #require(report.models.first)
        let lm = try #require(dense.languageModel)
        #expect(lm.perplexity == 30 && lm.evalTokensPerSecond == 2000 && dense.parameters == 5_000_000 && dense.sparsity == 0)
        #expect(lm.generation == .init(stage: "generate", name: "fp32"), "scored as `dense`, generated as `fp32`: one artifact")
        #expect(lm.decodeTokensPerSecond == 100 && lm.prefillTokensPerSecond == 1000 && lm.kvCacheBytes == 262_144 && lm.weightsBytes == 20_000_000)
        #expect(lm.decodeMillisecondsPerToken == 10)
        #expect(dense.sizeBytes == 20_500_000, "the stored artifact's size from the record")
        #expect(lm.artifact == String(repeating: "aa", count: 32))

        let wanda = try #require(report.models.first { $0.name == "wanda_50" })
        #expect(wanda.languageModel?.generation == nil && wanda.languageModel?.decodeTokensPerSecond == nil)
        #expect(wanda.sizeBytes == 14_000_000, "a sweep instance named with its selector")

        let elsewhere = try #require(report.models.last)
        #expect(elsewhere.stage == "generate" && elsewhere.languageModel?.perplexity == nil)
        #expect(elsewhere.languageModel?.decodeTokensPerSecond == 200 && elsewhere.sizeBytes == nil, "a path: no stored artifact")
    }

    @Test func deltaPerplexityIsRelativeToTheModelTheOthersWereMadeFrom() throws {
        let report = RunReport(try LanguageModelFixtures.run())
        #expect(report.models.filter(\.isBaseline).map(\.label) == ["dense"], "no `baseline` written: the common ancestor")
        let gptq = try #require(report.models.first { $0.name == "gptq_int4_g128" })
        let delta = try #require(gptq.delta)
        #expect(delta.baseline == "dense")
        #expect(abs((delta.perplexityChange ?? 0) - 0.03) < 1e-12)
        #expect(abs((delta.decodeSpeedup ?? 0) - 1.6) < 1e-12)
        #expect(abs((delta.sizeReduction ?? 0) - 20.5 / 3.6) < 1e-12)
        let wanda = try #require(report.models.first { $0.name == "wanda_50" })
        #expect(abs((wanda.delta?.perplexityChange ?? 0) - 0.1) < 1e-12)
        #expect(report.models.first?.delta?.perplexityChange == 0)
    }

    /// A sweep instance scored by its own stage (one model) is compared with
    /// the baseline of another stage when that model is upstream of it and
    /// both stages measured the same way; not when the protocol differs.
    @Test func aModelScoredAloneIsComparedWithAnUpstreamBaseline() throws {
        typealias F = LanguageModelFixtures
        guard case .object(var stages)? = F.recipe[member: "stages"] else {
            Issue.record("the fixture recipe has no stages")
            return
        }
        stages["ppl_pruned[method=magnitude]"] = F.recipeStage(
            "eval/perplexity", models: ["pruned_50": "${pruned[method=magnitude].model}"], dependencies: ["pruned[method=magnitude]"])
        stages["pruned[method=magnitude]"] = F.recipeStage("prune/oneshot", dependencies: ["pretrain"])
        stages["ppl_other"] = F.recipeStage(
            "eval/perplexity", models: ["pruned_50": "${pruned[method=magnitude].model}"], dependencies: ["pruned[method=magnitude]"])
        var alone = F.perplexityMetrics([("pruned_50", 31.5, 0.5, 2000)])
        var otherProtocol = alone
        otherProtocol["seq_len"] = .int(64)
        alone["stride"] = nil
        let run = Fixtures.run(id: "20261207T100000Z-wikitext-llama-oneshot-0badcafe", stages: try F.run().stages + [
            try F.producer("pruned[method=magnitude]", "prune/oneshot", outputs: ["model": (F.digest("ee"), 14_000_000)]),
            Fixtures.stage("ppl_pruned[method=magnitude]", "eval/perplexity", metrics: alone),
            Fixtures.stage("ppl_other", "eval/perplexity", metrics: otherProtocol),
        ], recipe: .object(["stages": .object(stages)]))
        let report = RunReport(run)
        let pruned = try #require(report.models.first { $0.stage == "ppl_pruned[method=magnitude]" })
        #expect(pruned.delta?.baseline == "dense")
        #expect(abs((pruned.delta?.perplexityChange ?? 0) - 0.05) < 1e-12)
        let other = try #require(report.models.first { $0.stage == "ppl_other" })
        #expect(other.delta == nil, "seq_len 64 is another protocol")
    }

    @Test func aWrittenBaselineWins() throws {
        var run = try LanguageModelFixtures.run()
        guard case .object(var recipe) = run.recipe, case .object(var stages)? = recipe["stages"], case .object(var ppl)? = stages["ppl"],
              case .object(var with)? = ppl["with"]
        else { Issue.record("fixture recipe"); return }
        with["baseline"] = .string("gptq_int4_g128")
        ppl["with"] = .object(with)
        stages["ppl"] = .object(ppl)
        recipe["stages"] = .object(stages)
        run.recipe = .object(recipe)
        let report = RunReport(run)
        #expect(report.models.filter(\.isBaseline).map(\.label) == ["gptq_int4_g128"])
        let dense = try #require(report.models.first)
        #expect(abs((dense.delta?.perplexityChange ?? 0) - (30 / 30.9 - 1)) < 1e-12)
    }

    @Test func sameNameButAnotherArtifactIsNotMerged() throws {
        var run = try LanguageModelFixtures.run()
        run.stages[4].metrics = LanguageModelFixtures.generateMetrics([("dense", 100)])
        run.recipe = .object([
            "stages": .object([
                "ppl": LanguageModelFixtures.recipeStage("eval/perplexity", models: [
                    "dense": "${pretrain.model}", "wanda_50": "${pruned[method=wanda].model}", "gptq_int4_g128": "${gptq_int4.model}",
                ], dependencies: ["pretrain", "pruned[method=wanda]", "gptq_int4"]),
                "generate": LanguageModelFixtures.recipeStage("eval/generate", models: ["dense": "${gptq_int4.model}"], dependencies: ["gptq_int4"]),
            ]),
        ])
        let report = RunReport(run)
        #expect(report.models.map(\.label) == ["dense", "gptq_int4_g128", "wanda_50"], "`dense` generated is the int4 artifact")
        #expect(report.models.first { $0.name == "gptq_int4_g128" }?.languageModel?.generation == .init(stage: "generate", name: "dense"))
        #expect(report.models.first?.languageModel?.generation == nil)
    }

    @Test func unresolvableReferencesKeepSeparateRowsAndNoAncestorBaseline() throws {
        var run = try LanguageModelFixtures.run()
        run.recipe = .object([:])
        let report = RunReport(run)
        #expect(report.models.map(\.label) == ["dense", "gptq_int4_g128", "wanda_50", "elsewhere", "fp32", "gptq_int4"])
        #expect(report.models.allSatisfy { $0.delta == nil && $0.sizeBytes == nil })
    }

    @Test func referencesResolveThroughSweepInstances() throws {
        #expect(ModelReference.stageOutput("${pruned[sparsity=0.5].model}")! == ("pruned[sparsity=0.5]", "model"))
        #expect(ModelReference.stageOutput("${vars.x}") == nil && ModelReference.stageOutput("a ${b.c}") == nil)
        #expect(ModelReference.bindings("pruned[sparsity=0.5, method=wanda]") == ["method=wanda", "sparsity=0.5"])
        let run = Fixtures.run(stages: [
            try LanguageModelFixtures.producer("pruned[method=wanda,sparsity=0.5]", "prune/oneshot", outputs: ["model": (LanguageModelFixtures.digest("dd"), 9)]),
            try LanguageModelFixtures.producer("pruned[method=magnitude,sparsity=0.5]", "prune/oneshot", outputs: ["model": (LanguageModelFixtures.digest("ee"), 8)]),
        ])
        let dependencies: Value = .array([.string("pruned[method=wanda,sparsity=0.5]")])
        #expect(ModelReference.producingStage("pruned", dependencies: dependencies, in: run)?.id == "pruned[method=wanda,sparsity=0.5]")
        #expect(ModelReference.producingStage("pruned[sparsity=0.5,method=wanda]", dependencies: dependencies, in: run)?.id == "pruned[method=wanda,sparsity=0.5]")
        #expect(ModelReference.producingStage("pruned[method=magnitude]", dependencies: dependencies, in: run) == nil)
    }

    @Test func paretoFrontsWherePerplexityIsLowerIsBetter() throws {
        let report = RunReport(try LanguageModelFixtures.run())
        #expect(report.tradeOff(.size) == nil && report.tradeOff(.latency) == nil, "no classifier")
        let size = try #require(report.tradeOff(.size, quality: .perplexity))
        #expect(size.axis == "size (bytes)")
        #expect(size.models == ["dense", "gptq_int4_g128", "wanda_50"])
        // wanda_50 is larger and worse than gptq_int4_g128; read as higher-is-better it would be on the front.
        #expect(size.front == ["dense", "gptq_int4_g128"])
        let decode = try #require(report.tradeOff(.decodeTime, quality: .perplexity))
        #expect(decode.axis == "decode time per token (ms)")
        #expect(decode.models == ["dense", "gptq_int4_g128"], "models with a perplexity and a decode speed")
        #expect(decode.front == ["dense", "gptq_int4_g128"])
    }

    @Test func textReportHasTheLanguageModelTable() throws {
        let text = TextReport.render(RunReport(try LanguageModelFixtures.run(), readOutput: LanguageModelFixtures.read))
        #expect(text.contains("language models (Δ against baseline dense)"), "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.contains("perplexity") && $0.contains("Δ perplexity") })
        for column in ["quantization", "sparsity", "params", "size", "eval tokens/s", "decode tokens/s"] {
            #expect(header.contains(column), "\(column) in \(header)")
        }
        let gptq = try #require(lines.first { $0.hasPrefix("  gptq_int4_g128 ") && $0.contains("30.90") })
        #expect(gptq.contains("weight_only int4 g128, 28 quantized Linear modules") && gptq.contains("+3.00%") && gptq.contains("3.6 MB"))
        #expect(gptq.contains("900/s") && gptq.contains("160/s"), "\(gptq)")
        #expect(lines.contains { $0.hasPrefix("  dense (baseline) ") && $0.contains("30.00") && $0.contains("+0.00%") })
        #expect(lines.contains { $0.hasPrefix("  wanda_50 ") && $0.contains("+10.00%") && $0.contains("50.0%") })
        #expect(text.contains("Pareto front, perplexity (lower is better) vs size (bytes): dense, gptq_int4_g128"))
        #expect(text.contains("Pareto front, perplexity (lower is better) vs decode time per token (ms): dense, gptq_int4_g128"))
        #expect(!text.contains("accuracy"), "no classifier columns or fronts")
        #expect(text.contains("generated text (generate: greedy, up to 48 new tokens)"))
        #expect(text.contains("ppl (eval/perplexity): 280.0k tokens, non-overlapping windows of 128 tokens\n"), "\(text)")
        #expect(text.contains("generate (eval/generate): 2 prompts, up to 48 new tokens each at batch 1, peak resident memory 400.0 MB (the whole squeeze process)"))
        #expect(text.contains("  prompt 1: \" = Robert Boulter = \\n\""))
        #expect(text.contains("    dense: \" is an English actor .\\nHe had a guest role\""), "the generated row is labelled as its perplexity row")
    }

    @Test func htmlShowsTheTablesChartsAndEscapedSamples() throws {
        let report = RunReport(try LanguageModelFixtures.run(), readOutput: LanguageModelFixtures.read)
        let html = HTMLReport.render(report)
        #expect(!html.contains("<script"))
        let page = try HTMLReportTests.Elements.parse(html)
        let rows = page.named("tr", within: HTMLReportTests.Elements.hasClass("models-lm")).compactMap { $0.attributes["data-model"] }
        #expect(rows == report.models.map(\.label))
        let generation = page.named("tr", within: HTMLReportTests.Elements.hasClass("models-generation")).compactMap { $0.attributes["data-model"] }
        #expect(generation == report.models.map(\.label))
        let titles = page.all.filter { HTMLReportTests.Elements.hasClass("chart-title")($0) }.map(\.text)
        #expect(titles == ["Perplexity vs size", "Perplexity vs decode speed"])
        let axes = page.all.filter { HTMLReportTests.Elements.hasClass("axis-title")($0) }.map(\.text)
        #expect(axes.contains("perplexity (lower is better)") && axes.contains("decode time per token (ms)") && axes.contains("size (MB)"))
        let front = page.named("circle", within: HTMLReportTests.Elements.hasClass("lm-trade-off-size"))
            .filter { HTMLReportTests.Elements.hasClass("front")($0) }.compactMap { $0.attributes["data-model"] }
        #expect(Set(front) == ["dense", "gptq_int4_g128"])

        let samples = page.all.filter { $0.name == "td" && HTMLReportTests.Elements.hasClass("continuation")($0) }
        #expect(samples.count == 4, "two prompts, two models")
        #expect(samples.contains { $0.text == " " + LanguageModelFixtures.hostile }, "the continuation reads back as generated")
        #expect(samples.contains { $0.text == " is an English actor .\nHe had a guest role" })
        let prompts = page.all.filter { $0.name == "pre" && HTMLReportTests.Elements.hasClass("prompt")($0) }.map(\.text)
        #expect(prompts == [" = Robert Boulter = \n", " The game 's battle system"])
        let sampleRows = page.named("tr", within: HTMLReportTests.Elements.hasClass("samples")).compactMap { $0.attributes["data-model"] }
        #expect(sampleRows == ["dense", "gptq_int4_g128", "dense", "gptq_int4_g128"], "generated models under their table labels")
        #expect(html.contains("Decoding: greedy, up to 48 new tokens."))
        let stages = page.all.filter { $0.name == "li" && $0.ancestors.contains { HTMLReportTests.Elements.hasClass("lm-stages")(page.all[$0]) } }
        #expect(stages.map(\.text) == [" : 280.0k tokens, non-overlapping windows of 128 tokens",
                                       " : 2 prompts, up to 48 new tokens each at batch 1, peak resident memory 400.0 MB (the whole squeeze process)"])
    }

    @Test func perplexitiesFarApartGetALogarithmicAxis() throws {
        let scale = ChartScale(logarithmicCovering: [30, 33, 900])
        #expect(scale.ticks == [50, 100, 200, 500, 1000])
        #expect(scale.ticks.map(scale.label) == ["50", "100", "200", "500", "1000"])
        #expect(scale.position(scale.low, from: 0, to: 100) == 0 && abs(scale.position(scale.high, from: 0, to: 100) - 100) < 1e-9)
        let decade = scale.position(300, from: 0, to: 100) - scale.position(30, from: 0, to: 100)
        #expect(abs(decade - (scale.position(1000, from: 0, to: 100) - scale.position(100, from: 0, to: 100))) < 1e-9, "equal ratios, equal distances")

        var run = try LanguageModelFixtures.run()
        run.stages[3].metrics["wanda_50.perplexity"] = .double(900)
        let page = try HTMLReportTests.Elements.parse(HTMLReport.render(RunReport(run)))
        let axes = page.all.filter { HTMLReportTests.Elements.hasClass("axis-title")($0) }.map(\.text)
        #expect(axes.filter { $0 == "perplexity (log scale, lower is better)" }.count == 1, "only the size chart has wanda_50: \(axes)")
        let ticks = page.named("text", within: HTMLReportTests.Elements.hasClass("lm-trade-off-size"))
            .filter { HTMLReportTests.Elements.hasClass("tick")($0) }.map(\.text)
        #expect(ticks.contains("100") && ticks.contains("500"), "\(ticks)")
    }

    @Test func anUnreadableGenerateReportIsSaidNotSkipped() throws {
        struct Gone: Error, CustomStringConvertible { var description: String { "object missing" } }
        let report = RunReport(try LanguageModelFixtures.run()) { _, _ in throw Gone() }
        let generation = try #require(report.generations?.first)
        #expect(generation.models.isEmpty && generation.problem == "cannot read its report output: object missing")
        #expect(HTMLReport.render(report).contains("The texts are not shown: cannot read its report output: object missing"))
        #expect(report.models.allSatisfy { $0.quantization == nil })
        let malformed = RunReport(try LanguageModelFixtures.run()) { _, _ in Data("[1, 2".utf8) }
        #expect(malformed.generations?.first?.problem?.hasPrefix("its report.json is not valid JSON") == true)
    }

    @Test func jsonRoundTripsAndKeepsTheQuality() throws {
        let report = RunReport(try LanguageModelFixtures.run(), readOutput: LanguageModelFixtures.read)
        let decoded = try SqueezeJSON.decode(RunReport.self, from: try SqueezeJSON.encode(report))
        #expect(decoded.models == report.models && decoded.fronts == report.fronts && decoded.generations == report.generations)
        #expect(decoded.fronts.map(\.quality) == [.perplexity, .perplexity])
    }

    @Test func classifiersAndLanguageModelsInOneRunKeepTheirOwnTablesAndLabels() throws {
        var run = try LanguageModelFixtures.run()
        run.stages.append(Fixtures.stage("classify", "eval/classification", metrics: Fixtures.evalMetrics([("dense", 0.8, 10, 1)], baseline: nil)))
        let report = RunReport(run)
        #expect(report.models.map(\.label) == ["dense", "ppl/dense", "gptq_int4_g128", "wanda_50", "elsewhere"])
        #expect(report.fronts.map(\.quality) == [.accuracy, .accuracy, .perplexity, .perplexity])
        let text = TextReport.render(report)
        #expect(text.contains("\nmodels\n") && text.contains("language models (Δ against baseline dense)"), "\(text)")
        #expect(text.contains("Pareto front, accuracy vs size (bytes): dense"))
    }

    /// The text, HTML and JSON of a classifier-only run are the bytes the
    /// report wrote before language models (commit 278ed6b), by SHA-256.
    @Test func classifierOnlyOutputIsUnchanged() throws {
        let report = RunReport(Fixtures.cofiRun(), readOutput: LanguageModelFixtures.read)
        #expect(Hashing.sha256(Data(TextReport.render(report).utf8)).hex == "fe0c32cddaafef7e884dd4e93583c0b823e1deaa0c02576fab5b2d7b6ccd9cda")
        #expect(Hashing.sha256(Data(HTMLReport.render(report).utf8)).hex == "aec96f2834b68c845ebe37f601e5982df2a11bf4644d0a4944008508118aa587")
        #expect(Hashing.sha256(Data(report.prettyJSON.utf8)).hex == "bf09e46914f89df4db6751783e54ea68290cc48a3b5d96f481af31252c8a73b8")
        let empty = RunReport(Fixtures.run(stages: [Fixtures.stage("data", "data/text-classification")]))
        #expect(Hashing.sha256(Data(TextReport.render(empty).utf8)).hex == "1d62fc1a6228dbf6b7e4f7edc1361b4b3de147808ef08d1068e76a1b45ae06c6")
        #expect(Hashing.sha256(Data(HTMLReport.render(empty).utf8)).hex == "ee9d40dd8f1eddf82294e7400e8de06e342b64e8e7ff3f949f68a021e4e69cdf")
    }
}
