import Foundation
import SqueezeCompress
import SqueezeModels
import Testing

/// `quantize/weight-only` end to end through the CLI on the tiny sentiment
/// task (hidden 16; input widths 8, 16, 24 and 32): int4 and int8 models of
/// the fine-tuned teacher evaluated next to it; bad parameters and models.
@Suite struct QuantizeWeightOnlyStageTests {
    static func weightOnly(_ name: String, model: String = "${base.model}", weights: String, extra: String = "") -> String {
        "  \(name):\n    uses: quantize/weight-only\n    with:\n      model: \(model)\n      weights: \(weights)" + extra
    }

    @Test func quantizesEvaluatesAndReports() throws {
        let stages = [
            QuantizeStageTests.teacher,
            Self.weightOnly("int4", model: "${teacher.model}", weights: "{bits: 4, group_size: 8}", extra: "\n      skip: [decoder]"),
            Self.weightOnly("int8", model: "${teacher.model}", weights: "{bits: 8, group_size: 8, symmetric: false}"),
            """
              eval:
                uses: eval/classification
                with:
                  models:
                    teacher: ${teacher.model}
                    int4: ${int4.model}
                    int8: ${int8.model}
                  baseline: teacher
                  data: ${data.dataset}
                  latency_samples: 2
                  speed_seq_len: 16
                  speed_repeats: 2
            """,
        ]
        let project = try TinySentiment.makeProject("weight-only", recipe: TinySentiment.recipe(name: "tiny-weight-only", stages: stages.joined(separator: "\n")))
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")

        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "int4")
        #expect(metrics["quantized_modules"] as? Int == 14 && metrics["sqnr_kind"] as? String == "weight", "\(metrics)")
        #expect((metrics["sqnr_min_db"] as? Double ?? 0) > 10, "\(metrics)")
        #expect((metrics["encoder_compression"] as? Double ?? 0) > 2, "\(metrics)")
        let warnings = try #require(metrics["warnings"] as? [String])
        #expect(warnings == ["skip pattern `decoder` matches no Linear module (did you mean `encoder`?)"], "\(warnings)")

        let reportPath = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "int4", output: "report")
            .replacingOccurrences(of: "/cache/trees/", with: "/cache/objects/")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
        #expect(report["mode"] as? String == "weight_only" && report["activations"] == nil)
        let weights = try #require(report["weights"] as? [String: Any])
        #expect(weights["bits"] as? Int == 4 && weights["group_size"] as? Int == 8 && weights["granularity"] as? String == "per_group")
        let layers = try #require(report["layers"] as? [[String: Any]])
        #expect(layers.count == 14 && layers.allSatisfy { $0["weight_sqnr_db"] is Double })

        for (stage, bits) in [("int4", 4), ("int8", 8)] {
            let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: stage, output: "model")
            try ModelArtifact(directory: directory).verify()
            let quantized = try QuantizedBertModel(directory: directory)
            #expect(quantized.quantization.mode == .weightOnly && quantized.quantization.weights.bits == bits)
            #expect(quantized.quantization.weights.symmetric == (bits == 4))
        }

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        let teacherAccuracy = try #require(eval["teacher.accuracy"] as? Double)
        #expect(teacherAccuracy >= 0.8, "\(eval)")
        for name in ["int4", "int8"] {
            #expect(abs((eval["\(name).accuracy"] as? Double ?? 0) - teacherAccuracy) <= 0.1, "\(name): \(eval)")
            #expect((eval["\(name).size_bytes"] as? Int ?? .max) < eval["teacher.size_bytes"] as? Int ?? 0)
            #expect(eval["\(name).quantization"] as? String == "weight_only", "\(eval)")
            #expect(eval["\(name).parameters"] as? Int == eval["teacher.parameters"] as? Int)
        }
    }

    @Test(arguments: [
        ("{bits: 3}", "`weights.bits` must be 4 or 8, got `3`"),
        ("{bits: 4, group_size: 0}", "`weights.group_size` must be at least 1, got 0"),
        ("{bits: 4, granularity: per_group}", "unknown key `granularity` in `weights`"),
        ("{group_size: 8}", "`weights.bits` is required"),
        ("{bits: 4, symmetric: maybe}", "`weights.symmetric` must be true or false"),
    ])
    func badParametersAreRecipeErrors(weights: String, message: String) throws {
        let project = try TinySentiment.makeProject(
            "weight-only-bad", recipe: TinySentiment.recipe(name: "tiny-weight-only", stages: Self.weightOnly("wo", weights: weights)))
        try project.expectInvalidRecipe(message)
    }

    /// Problems only the model reveals stop the stage before it quantizes anything.
    @Test func groupSizesAndQuantizedModelsFailBeforeAnyWork() throws {
        let stages = [
            Self.weightOnly("grouped", weights: "{bits: 4, group_size: 16}"),
            Self.weightOnly("first", weights: "{bits: 8, group_size: 8}"),
            Self.weightOnly("again", model: "${first.model}", weights: "{bits: 4, group_size: 8}"),
        ]
        let project = try TinySentiment.makeProject(
            "weight-only-fail", recipe: TinySentiment.recipe(name: "tiny-weight-only", stages: stages.joined(separator: "\n")))
        let result = try project.run("recipe/recipe.yaml", ["--keep-going"], timeout: 300)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("""
            group_size 16 does not divide the input width 8 of `encoder.layer.1.attention.output.dense`; \
            use a group_size dividing every quantized width, e.g. 8
            """), "\(result)")
        #expect(result.stderr.contains("the model is already quantized (weight_only int8 g8"), "\(result)")
        for stage in ["grouped", "again"] {
            let log = project.read("runs/\(result.runID ?? "")/logs/\(stage).log") ?? ""
            #expect(!log.contains("quantize/weight-only:"), "\(stage) did no work: \(log)")
        }
    }

    @Test func sameInputsGiveTheSameArtifact() throws {
        let project = try TinySentiment.makeProject(
            "weight-only-digest",
            recipe: TinySentiment.recipe(name: "tiny-weight-only", stages: Self.weightOnly("wo", weights: "{bits: 4, group_size: 8, symmetric: false}")))
        let first = try project.run(timeout: 300)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 300)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("wo: cached"), "the second run quantizes again: \(second)")
        let record = try project.record(of: first)
        let again = try project.record(of: second)
        for output in ["model", "report"] {
            let digest = try #require(record.stage("wo")?.outputs[output]?.raw)
            #expect(again.stage("wo")?.outputs[output]?.raw == digest, "same inputs, same \(output)")
        }
    }
}
