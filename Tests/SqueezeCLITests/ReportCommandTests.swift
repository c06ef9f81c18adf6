import Foundation
import Testing

/// `squeeze report` and `squeeze compare` on the records of a tiny real run
/// (a fine-tune and an eval with a baseline) and of its cached rerun.
@Suite struct ReportCommandTests {
    static let recipe = TinySentiment.recipe(name: "tiny-report", stages: """
      tuned:
        uses: train/finetune
        with:
          model: ${base.model}
          data: ${data.dataset}
          epochs: 2
          batch_size: 16
          lr: 3.0e-3
          max_seq_len: 16
          eval_every: 5
          log_every: 5
      eval:
        uses: eval/classification
        with:
          models:
            base: ${base.model}
            tuned: ${tuned.model}
          data: ${data.dataset}
          baseline: base
          latency_samples: 3
          speed_seq_len: 16
          speed_repeats: 1
    """)

    /// A project with two runs of the recipe: the first computes, the second is all cached.
    static func twoRuns() throws -> (project: Project, first: String, second: String) {
        let project = try TinySentiment.makeProject("report", recipe: recipe)
        let first = try project.run(timeout: 300)
        try #require(first.status == 0, "\(first)")
        let second = try project.run(timeout: 300)
        try #require(second.status == 0, "\(second)")
        return (project, try #require(first.runID), try #require(second.runID))
    }

    @Test func reportAndCompareExitCodes() throws {
        let (project, first, second) = try Self.twoRuns()

        let json = try project.squeeze(["report", first, "--json"] + project.storage())
        try #require(json.status == 0, "\(json)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let models = try #require(report["models"] as? [[String: Any]])
        #expect(models.compactMap { $0["label"] as? String } == ["base", "tuned"])
        let tuned = try #require(models.last)
        for key in ["accuracy", "macroF1", "sizeBytes", "parameters", "latencyP50Milliseconds", "throughputPerSecond", "batchLatency", "delta"] {
            #expect(tuned[key] != nil, "the eval stage's real metrics give `\(key)`: \(tuned)")
        }
        let curves = try #require(report["curves"] as? [[String: Any]])
        #expect(curves.compactMap { $0["metric"] as? String } == ["dev_curve", "loss_curve"])

        try FileManager.default.createDirectory(atPath: project.path("out"), withIntermediateDirectories: false)
        for file in ["report.html", project.path("out/report.html")] {
            let html = try project.squeeze(["report", "runs/\(second)", "--html", file] + project.storage())
            #expect(html.status == 0, "\(html)")
            #expect(html.stdout.contains("tuned") && html.stdout.contains("Pareto front"), "the text report still goes to stdout: \(html)")
            let page = try #require(project.read(file.hasPrefix("/") ? "out/report.html" : file))
            #expect(page.contains("data-model=\"tuned\"") && page.contains("<svg"))
        }

        let passes = try project.squeeze(["compare", first, second, "--fail-if", "eval.*.accuracy < -0.01"] + project.storage())
        #expect(passes.status == 0, "a cached rerun has the same accuracy: \(passes)")
        #expect(passes.stdout.contains("ok   eval.*.accuracy < -0.01: 2 matched metrics"), "\(passes)")

        let trips = try project.squeeze(["compare", first, second, "--fail-if", "eval.*.parameters >= 0", "--json"] + project.storage())
        #expect(trips.status == 1, "\(trips)")
        let output = try #require(try JSONSerialization.jsonObject(with: Data(trips.stdout.utf8)) as? [String: Any])
        #expect(output["failed"] as? Bool == true)
        let tripped = ((output["conditions"] as? [[String: Any]])?.first?["tripped"] as? [[String: Any]])?.compactMap { $0["path"] as? String }
        #expect(tripped == ["eval.base.parameters", "eval.tuned.parameters"])

        let malformed = try project.squeeze(["compare", first, second, "--fail-if", "eval.*.accuracy"] + project.storage())
        #expect(malformed.status == 2, "\(malformed)")
        #expect(malformed.stderr.contains("no comparison operator") && malformed.stderr.contains("OPERATOR"), "\(malformed)")

        let typo = try project.squeeze(["compare", first, second, "--fail-if", "evl.*.accuracy < 0"] + project.storage())
        #expect(typo.status == 2 && typo.stderr.contains("matches no metric"), "\(typo)")

        let unknown = try project.squeeze(["compare", first, "no-such-run"] + project.storage())
        #expect(unknown.status == 2 && unknown.stderr.contains("no run matches `no-such-run`"), "\(unknown)")
        let missingReport = try project.squeeze(["report", "runs/nothing-here"] + project.storage())
        #expect(missingReport.status == 2 && missingReport.stderr.contains("no run record at runs/nothing-here/run.json"), "\(missingReport)")
    }
}
