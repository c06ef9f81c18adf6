import Foundation
import SqueezeCompress
import SqueezeModels
import Testing

/// `quantize/ptq` with `smoothing` (SmoothQuant) through the CLI on the tiny
/// sentiment task: a fixed α and `alpha: auto` run, record α in the metrics
/// and report.json, and write a smoothed model that loads and evaluates;
/// bad `smoothing` values are recipe errors at their position.
@Suite struct QuantizePTQSmoothingTests {
    static func smoothed(_ name: String, _ smoothing: String, model: String = "${teacher.model}") -> String {
        QuantizeStageTests.defaultStatic
            .replacingOccurrences(of: "  static:", with: "  \(name):")
            .replacingOccurrences(of: "${teacher.model}", with: model)
            + "\n      smoothing: \(smoothing)"
    }

    @Test func smoothedStagesRecordAlphaAndEvaluate() throws {
        let eval = """
              eval:
                uses: eval/classification
                with:
                  models:
                    teacher: ${teacher.model}
                    fixed: ${fixed.model}
                    searched: ${searched.model}
                  baseline: teacher
                  data: ${data.dataset}
                  latency_samples: 2
                  speed_seq_len: 16
                  speed_repeats: 1
            """
        let project = try TinySentiment.makeProject(
            "quantize-smooth",
            recipe: QuantizeStageTests.recipe(
                QuantizeStageTests.teacher, Self.smoothed("fixed", "{alpha: 0.5, attention_output: true}"), Self.smoothed("searched", "{alpha: auto}"), eval))
        let result = try project.run(timeout: 900)
        #expect(result.status == 0, "\(result)")

        let fixed = try ModelStagesTests.metrics(project, runID: result.runID, stage: "fixed")
        #expect(fixed["smoothing_alpha"] as? Double == 0.5 && fixed["smoothing_alpha_searched"] as? Bool == false, "\(fixed)")
        let searched = try ModelStagesTests.metrics(project, runID: result.runID, stage: "searched")
        let alpha = try #require(searched["smoothing_alpha"] as? Double)
        #expect(SmoothingSettings.searchGrid.contains(alpha) && searched["smoothing_alpha_searched"] as? Bool == true, "\(searched)")

        let reportPath = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "searched", output: "report")
            .replacingOccurrences(of: "/cache/trees/", with: "/cache/objects/")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
        let smoothing = try #require(report["smoothing"] as? [String: Any])
        #expect(smoothing["alpha"] as? Double == alpha && smoothing["alpha_searched"] as? Bool == true)
        let search = try #require(smoothing["search"] as? [[String: Any]])
        #expect(search.map { $0["alpha"] as? Double ?? -1 } == SmoothingSettings.searchGrid)
        let losses = search.compactMap { $0["calibration_logits_mse"] as? Double }
        #expect(losses.count == search.count && losses.min() == search.first { $0["alpha"] as? Double == alpha }?["calibration_logits_mse"] as? Double)
        let modules = try #require(smoothing["modules"] as? [[String: Any]])
        // Two layers: query, key, value and FFN input each (attention outputs are off by default).
        #expect(modules.count == 8 && modules.allSatisfy { $0["fold"] as? String == "activation_quantization" }, "\(modules)")
        #expect(modules.allSatisfy { ($0["factor_min"] as? Double ?? 0) > 0 && ($0["factor_max"] as? Double ?? 0) >= $0["factor_min"] as? Double ?? .infinity })
        let fixedReportPath = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "fixed", output: "report")
            .replacingOccurrences(of: "/cache/trees/", with: "/cache/objects/")
        let fixedReport = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixedReportPath))) as? [String: Any])
        let fixedModules = try #require((fixedReport["smoothing"] as? [String: Any])?["modules"] as? [[String: Any]])
        // With `attention_output: true`: the attention outputs too, through the value projections.
        #expect(fixedModules.count == 10 && fixedModules.filter { $0["fold"] as? String == "value_projection" }.count == 2, "\(fixedModules)")

        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "fixed", output: "model")
        let quantized = try QuantizedBertModel(directory: directory)
        #expect(quantized.quantization.format == ModelQuantization.smoothedFormat && quantized.quantization.smoothing?.alpha == 0.5)
        #expect(quantized.quantization.smoothing?.foldedIntoValue.count == 2)
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        let teacher = try #require(metrics["teacher.accuracy"] as? Double)
        for name in ["fixed", "searched"] {
            #expect(abs((metrics["\(name).accuracy"] as? Double ?? 0) - teacher) <= 0.05, "\(name): \(metrics)")
        }
        let log = project.read("runs/\(result.runID ?? "")/logs/searched.log") ?? ""
        #expect(log.contains("smoothing α 0.0: calibration logits MSE") && log.contains("(least calibration logits MSE)"), "\(log)")
    }

    @Test(arguments: [
        ("{alpha: 1.5}", "`smoothing.alpha` must be a number in [0, 1] or `auto`, got `1.5`"),
        ("{alpha: -0.2}", "`smoothing.alpha` must be a number in [0, 1] or `auto`, got `-0.2`"),
        ("{alpha: automatic}", "`smoothing.alpha` must be a number in [0, 1] or `auto`, got `automatic`"),
        ("{alpha: [0.5]}", "`smoothing.alpha` must be a number in [0, 1] or `auto`"),
        ("{alfa: 0.5}", "unknown key `alfa` in `smoothing`"),
        ("0.5", "expected a mapping ({string: any}), got a number"),
    ])
    func badSmoothingIsARecipeErrorAtItsPosition(smoothing: String, message: String) throws {
        let recipe = QuantizeStageTests.recipe(Self.smoothed("static", smoothing, model: "${base.model}"))
        let project = try TinySentiment.makeProject("quantize-smooth-bad", recipe: recipe)
        try project.expectInvalidRecipe(message)
        let lines = recipe.components(separatedBy: "\n")
        let line = try #require(lines.firstIndex { $0.contains("smoothing: ") }) + 1
        let result = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(result.stderr.contains("recipe.yaml:\(line):"), "the error names line \(line): \(result)")
    }
}
