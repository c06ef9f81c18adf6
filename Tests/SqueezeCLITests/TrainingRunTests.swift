import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeSupport
import Testing
@testable import SqueezeStages

/// The generic training run on a toy algorithm whose model is its update
/// count, scored by a lower-is-better "perplexity": the loop's batch order,
/// model selection (ties by the lower loss), keep-best, early stop and the
/// metrics and log lines of a score that is not accuracy.
@Suite struct TrainingRunTests {
    /// Counts its updates; the loss of an update is its batch's value.
    struct Counting: TrainingAlgorithm {
        var model = 0
        var seen: [Double] = []
        var windows: [Int] = []

        var metrics: [String: Value] { ["seen": .array(seen.map(Value.double)), "windows": .array(windows.map(Value.int))] }

        mutating func update(_ batch: Double) throws -> Double {
            model += 1
            seen.append(batch)
            return batch
        }

        func loss(of update: Double) -> Double { update }

        func progress(of update: Double) -> String { "loss \(update)" }

        mutating func record(_ update: Double, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            if closesWindow { windows.append(step) }
        }

        func saveState(into state: inout TrainingState) {
            state.values["model"] = .int(model)
            state.set("seen", doubles: seen)
            state.values["windows"] = .array(windows.map(Value.int))
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            (model, seen, windows) = (try state.int("model"), try state.doubles("seen"), try state.ints("windows"))
        }
    }

    /// Scores the model after `n` updates by `scores[n]` (perplexity, loss).
    struct Perplexity: ModelEvaluation {
        var scores: [Int: (perplexity: Double, loss: Double)]
        var split: String { "dev" }
        var primaryName: String { "perplexity" }

        func score(of model: Int) throws -> EvaluationScore? {
            guard !scores.isEmpty else { return nil }
            let score = try #require(scores[model], "no score for step \(model)")
            return EvaluationScore(
                primary: score.perplexity, higherIsBetter: false, loss: score.loss,
                metrics: [("perplexity", score.perplexity), ("loss", score.loss)], logText: "perplexity \(score.perplexity)")
        }
    }

    static let scores: [Int: (perplexity: Double, loss: Double)] = [
        2: (30, 3.4), 4: (20, 3.0), 6: (20, 2.9), 8: (25, 3.2), 10: (22, 3.1),
    ]

    /// 10 updates over epochs of 4 batches (`10·epoch + i`), logging every 3, evaluating every 2.
    /// With `resumeDirectory`, the loop checkpoints `checkpointEvery` there
    /// (as the key `toy-key`) and resumes from what it finds.
    func run(
        keepBest: Bool = true, patience: Int? = nil, scores: [Int: (perplexity: Double, loss: Double)] = scores,
        batches: @escaping (Int) -> [Double] = { epoch in (0..<4).map { Double(10 * epoch + $0) } },
        resumeDirectory: String? = nil, checkpointEvery: CheckpointInterval? = nil
    ) throws -> (result: TrainingRun<Double, Perplexity>.Result, algorithm: Counting, log: String) {
        let directory = try TempDir()
        let context = StageContext(
            stageID: "toy", recipeDirectory: directory.path, outputDirectory: directory.path, backend: "cpu", seed: 1, threads: 1,
            log: try StageLog(path: directory.file("toy.log")), progress: .silent, resumeDirectory: resumeDirectory, cacheKey: "toy-key")
        var loop = TrainingLoop(
            batches: batches, examples: 4, length: TrainingLength(examples: 4, batchSize: 1, epochs: nil, steps: 10), logEvery: 3,
            evalEvery: 2)
        loop.checkpointEvery = checkpointEvery
        let run = TrainingRun(
            loop: loop, evaluation: Perplexity(scores: scores), evaluationLabel: "toy dev", keepBest: keepBest, patience: patience)
        var algorithm = Counting()
        let result = try run.run(&algorithm, context)
        let log = try String(contentsOfFile: directory.file("toy.log"), encoding: .utf8)
        return (result, algorithm, log)
    }

    @Test func keepsTheLowestPerplexityTiesByLossAndRecordsItsMetrics() throws {
        let (result, algorithm, log) = try run()
        #expect(algorithm.seen == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21])
        #expect(algorithm.windows == [3, 6, 9, 10])
        #expect(result.model == 6)
        #expect(result.score?.primary == 20)
        #expect(result.score?.loss == 2.9)
        let metrics = result.metrics
        #expect(metrics["dev_perplexity"] == .double(20))
        #expect(metrics["dev_loss"] == .double(2.9))
        #expect(metrics["dev_accuracy"] == nil)
        #expect(metrics["output_step"] == .int(6))
        #expect(metrics["steps"] == .int(10))
        #expect(metrics["epochs"] == .double(2.5))
        #expect(metrics["train_examples"] == .int(4))
        #expect(metrics["stopped_early"] == .bool(false))
        let rows: [[Double]] = [[2, 30, 3.4], [4, 20, 3.0], [6, 20, 2.9], [8, 25, 3.2], [10, 22, 3.1]]
        #expect(metrics["dev_curve"] == .array(rows.map { row in .array([.int(Int(row[0])), .double(row[1]), .double(row[2])]) }))
        #expect(log.contains("step 4: toy dev perplexity 20.0\n"))
        #expect(log.contains("step 10: toy dev perplexity 22.0\n"))
        #expect(log.contains("trained 10 updates in "))
    }

    @Test func stopsEarlyAfterPatienceEvaluationsWithoutALowerPerplexity() throws {
        let (result, algorithm, log) = try run(patience: 1)
        #expect(algorithm.seen.count == 8)
        #expect(result.model == 6)
        #expect(result.metrics["stopped_early"] == .bool(true))
        #expect(result.metrics["steps"] == .int(8))
        #expect(result.metrics["output_step"] == .int(6))
        #expect(log.contains("early stop at step 8: 1 evaluations without a better perplexity\n"))
        #expect(!log.contains("step 10:"))
    }

    @Test func withoutKeepBestOutputsTheLastModel() throws {
        let (result, _, _) = try run(keepBest: false)
        #expect(result.model == 10)
        #expect(result.metrics["dev_perplexity"] == .double(22))
        #expect(result.metrics["output_step"] == .int(10))
    }

    @Test func withoutAnEvaluationSplitThereIsNoScore() throws {
        let (result, _, log) = try run(scores: [:])
        #expect(result.model == 10)
        #expect(result.score == nil)
        #expect(result.metrics["dev_curve"] == nil)
        #expect(result.metrics["output_step"] == nil)
        #expect(!log.contains("toy dev"))
    }

    @Test func aNonFiniteLossStopsTheRunAtItsStep() throws {
        let failure = #expect(throws: StageFailure.self) {
            _ = try run(batches: { epoch in [1, 2, epoch == 1 ? .nan : 3] })
        }
        #expect(failure?.message.contains("the training loss became nan at step 6 (epoch 2)") == true, "\(String(describing: failure))")
    }

    /// A second run over the area of a first resumes from its latest
    /// checkpoint (update 9: epoch 2 with one batch used) and ends where an
    /// uninterrupted run ends: the same remaining batch, curves, windows,
    /// model selection and metrics.
    @Test func aRunResumesFromTheLatestCheckpointWithTheSameResult() throws {
        let area = try TempDir()
        let straight = try run()
        let first = try run(resumeDirectory: area.path, checkpointEvery: .updates(3))
        #expect(first.log.contains("checkpoint at step 9: "))
        #expect(try FileManager.default.contentsOfDirectory(atPath: area.file("train")) == ["checkpoint-0000000009"])
        let second = try run(resumeDirectory: area.path, checkpointEvery: .updates(3))
        #expect(second.log.contains("resumed from the checkpoint at step 9 of 10\n"), "\(second.log)")
        #expect(!second.log.contains("step 8: toy dev"), "evaluations before the checkpoint are not run again")
        for resumed in [first, second] {
            #expect(resumed.algorithm.seen == straight.algorithm.seen)
            #expect(resumed.algorithm.windows == straight.algorithm.windows)
            #expect(resumed.result.model == straight.result.model)
            #expect(resumed.result.metrics == straight.result.metrics)
        }
    }

    /// The early-stop count and the best model are part of the checkpoint:
    /// resumed at update 6, the run still stops at 8 and outputs update 6's model.
    @Test func modelSelectionIsResumed() throws {
        let area = try TempDir()
        let straight = try run(patience: 1)
        _ = try run(patience: 1, resumeDirectory: area.path, checkpointEvery: .updates(3))
        let resumed = try run(patience: 1, resumeDirectory: area.path, checkpointEvery: .updates(3))
        #expect(resumed.log.contains("resumed from the checkpoint at step 6 of 10\n"), "\(resumed.log)")
        #expect(resumed.log.contains("early stop at step 8"))
        #expect(resumed.result.model == 6 && resumed.result.metrics == straight.result.metrics)
    }

    /// A checkpoint that does not load, or belongs to another key, is
    /// discarded with a warning and the run starts from scratch.
    @Test func anUnusableCheckpointIsDiscarded() throws {
        let straight = try run()
        let damages: [(String) throws -> Void] = [
            { try "{}".write(toFile: $0 + "/state.json", atomically: false, encoding: .utf8) },
            { path in
                let text = try String(contentsOfFile: path + "/state.json", encoding: .utf8)
                try text.replacingOccurrences(of: "toy-key", with: "other-key").write(toFile: path + "/state.json", atomically: false, encoding: .utf8)
            },
            { try FileManager.default.removeItem(atPath: $0 + "/tensors.safetensors") },
        ]
        for damage in damages {
            let area = try TempDir()
            _ = try run(resumeDirectory: area.path, checkpointEvery: .updates(3))
            try damage(area.file("train/checkpoint-0000000009"))
            let rerun = try run(resumeDirectory: area.path, checkpointEvery: .updates(3))
            #expect(rerun.log.contains("warning: discarding the checkpoint"), "\(rerun.log)")
            #expect(!rerun.log.contains("resumed from"))
            #expect(rerun.algorithm.seen == straight.algorithm.seen && rerun.result.metrics == straight.result.metrics)
        }
    }

    /// A checkpoint that cannot be written is a warning; training goes on to the same result.
    @Test func aCheckpointThatCannotBeWrittenIsAWarning() throws {
        let area = try TempDir()
        try "in the way".write(toFile: area.file("train"), atomically: false, encoding: .utf8)
        let straight = try run()
        let blocked = try run(resumeDirectory: area.path, checkpointEvery: .updates(3))
        #expect(blocked.log.contains("warning: cannot write the checkpoint at step 3 to "), "\(blocked.log)")
        #expect(blocked.algorithm.seen == straight.algorithm.seen && blocked.result.metrics == straight.result.metrics)
    }

    @Test func aLowerIsBetterScoreComparesTheOtherWay() {
        func score(_ primary: Double, _ loss: Double, higherIsBetter: Bool) -> EvaluationScore {
            EvaluationScore(primary: primary, higherIsBetter: higherIsBetter, loss: loss, metrics: [], logText: "")
        }
        #expect(score(10, 2, higherIsBetter: false).isBetter(than: score(11, 1, higherIsBetter: false)))
        #expect(!score(11, 1, higherIsBetter: false).isBetter(than: score(10, 2, higherIsBetter: false)))
        #expect(score(0.9, 2, higherIsBetter: true).isBetter(than: score(0.8, 1, higherIsBetter: true)))
        #expect(score(0.9, 1, higherIsBetter: true).isBetter(than: score(0.9, 2, higherIsBetter: true)))
        #expect(!score(0.9, 2, higherIsBetter: true).isBetter(than: score(0.9, 2, higherIsBetter: true)))
        #expect(!score(.nan, 1, higherIsBetter: false).isBetter(than: score(10, 2, higherIsBetter: false)))
    }
}

/// The toy model of `TrainingRunTests` is its update count.
extension Int: CheckpointableModel {
    public func save(into state: inout TrainingState, as prefix: String) {
        state.values[prefix + "count"] = .int(self)
    }

    public func restored(from state: TrainingState, as prefix: String) throws(TrainingStateError) -> Int {
        try state.int(prefix + "count")
    }
}
