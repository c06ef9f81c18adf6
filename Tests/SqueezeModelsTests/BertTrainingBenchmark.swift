import Foundation
import SqueezeTensor
import Testing
@testable import SqueezeModels

#if canImport(Glibc)
import Glibc
#endif

/// Fine-tuning step time of the real MiniLM-L6-H384 at batch 32 × 64 tokens
/// (forward, backward, clipping, AdamW) on CPUBackend. Opt-in, and meant for a
/// release build:
///
///     SQUEEZE_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter BertTrainingBenchmark
@Suite struct BertTrainingBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SQUEEZE_BENCH"] == "1"))
    func miniLMTrainingStep() throws {
        let directory = BertParityTests.modelDirectory.path
        guard FileManager.default.fileExists(atPath: directory + "/model.safetensors") else {
            return BertParityTests.skip("\(directory) is missing (run scripts/fetch-model)")
        }
        let model = try BertModel(directory: directory)
        let (batchSize, length) = (32, 64)
        var generator = SeededGenerator(seed: 1)
        let ids = (0..<(batchSize * length)).map { index in
            index % length == 0 ? Int32(101) : Int32(1000 + generator.next() % 20000)
        }
        let batch = BertBatch(inputIDs: Tensor(shape: [batchSize, length], int32s: ids))
        let labels = Tensor(shape: [batchSize], int32s: (0..<batchSize).map { Int32($0 % 2) })
        let threads = Int(ProcessInfo.processInfo.environment["SQUEEZE_THREADS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount
        let timing = TimingBackend(CPUBackend(threads: threads))
        var trainer = BertClassifierTrainer(
            model: model, options: TrainingHyperparameters(learningRate: 2e-5, weightDecay: 0.01, totalSteps: 100, seed: 1),
            backend: timing)
        var times: [Double] = []
        var losses: [Float] = []
        for step in 0..<6 {
            if step == 1 { timing.reset() }
            let start = Date()
            losses.append(try trainer.step(batch: batch, labels: labels).loss)
            times.append(Date().timeIntervalSince(start))
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let steady = times.dropFirst().sorted()
        print("""
            MiniLM-L6 training step B=\(batchSize) T=\(length) threads=\(threads): \
            first \(String(format: "%.3f", times[0])) s, median \(String(format: "%.3f", steady[steady.count / 2])) s, \
            min \(String(format: "%.3f", steady[0])) s; peak RSS \(usage.ru_maxrss / 1024) MB; losses \(losses)
            """)
        print(timing.report(steps: 5))
        #expect(losses.allSatisfy { $0.isFinite })
    }
}
