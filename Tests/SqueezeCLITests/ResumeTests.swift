import Foundation
import Glibc
import SqueezeSupport
import Testing

/// Stages that resume from checkpoints (`checkpoint_every`), end to end
/// through the CLI on tiny random models: for each long stage type, a run
/// stopped right after a checkpoint (the process exits as abruptly as a
/// SIGKILL, or is SIGKILLed, or times out) continues from that checkpoint
/// when rerun, and its outputs and metrics are those of an uninterrupted
/// run bit for bit. The uninterrupted run does not set `checkpoint_every`:
/// the parameter stays out of the key, so both runs have the same key.
@Suite(.serialized) struct ResumeTests {
    // MARK: Recipes

    static let finetune = """
          tuned:
            uses: train/finetune
            with:
              model: ${base.model}
              data: ${data.dataset}
              steps: 12
              batch_size: 8
              lr: 3.0e-3
              max_seq_len: 16
              warmup_ratio: 0.2
              weight_decay: 0.01
              eval_every: 4
              log_every: 5
        """

    static let bertDistill = TinySentiment.teacherStage(length: "epochs: 2") + """

          student:
            uses: distill/kd
            with:
              teacher: ${teacher.model}
              data: ${data.dataset}
              init: {from: teacher, layers: [1]}
              steps: 12
              batch_size: 8
              lr: 2.0e-3
              max_seq_len: 16
              eval_every: 4
              log_every: 5
              alpha_start: 0.9
              alpha_end: 0.3
              hidden_loss_weight: 0.5
              attention_loss_weight: 0.1
              layer_map: [[0, 1]]
        """

    static let cofi = TinySentiment.teacherStage(length: "epochs: 2") + """

          pruned:
            uses: prune/cofi
            with:
              teacher: ${teacher.model}
              data: ${data.dataset}
              target_sparsity: 0.5
              steps: 12
              lagrangian_warmup_steps: 4
              batch_size: 8
              max_seq_len: 16
              lr: 1.0e-3
              mask_lr: 0.1
              lambda_lr: 0.1
              eval_every: 4
              log_every: 5
              finetune_epochs: 0.5
        """

    static let causalLM = """
          lm:
            uses: train/causal-lm
            with:
              config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true}
              tokenizer: ${bpe.tokenizer}
              data: ${text.dataset}
              steps: 12
              lr: 0.01
              batch_size: 8
              warmup_ratio: 0.2
              weight_decay: 0.01
              eval_every: 4
              log_every: 5
        """

    static let decoderDistill = """
          pretrain:
            uses: train/causal-lm
            with:
              config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true}
              tokenizer: ${bpe.tokenizer}
              data: ${text.dataset}
              steps: 10
              lr: 0.01
              batch_size: 8
          student:
            uses: distill/kd
            with:
              teacher: ${pretrain.model}
              data: ${text.dataset}
              init: {from: teacher, layers: [1]}
              steps: 12
              lr: 0.01
              batch_size: 8
              eval_every: 4
              log_every: 5
              alpha: 0.5
              hidden_loss_weight: 0.5
        """

    /// A BERT project (TinySentiment) or a decoder project with `stages`.
    static func project(_ name: String, stages: String, decoder: Bool = false) throws -> Project {
        guard decoder else { return try TinySentiment.makeProject(name, recipe: TinySentiment.recipe(name: name, stages: stages)) }
        let project = try Project(name)
        _ = try project.write("recipe/train.txt", DecoderStagesTests.text)
        _ = try project.write("recipe/test.txt", String(DecoderStagesTests.text.split(separator: "\n").reversed().joined(separator: "\n")))
        _ = try project.write("recipe/recipe.yaml", """
            version: 1
            name: \(name)
            backend: cpu
            seed: 7
            stages:
              bpe:
                uses: tokenizer/train-bpe
                with: {files: [train.txt], vocab_size: 300}
              text:
                uses: data/text
                with: {tokenizer: "${bpe.tokenizer}", train: [train.txt], test: [test.txt], valid_fraction: 0.2, block_size: 16}
            \(stages)
            """)
        return project
    }

    // MARK: Helpers

    /// One cache and runs directory of `project`.
    struct Storage {
        var project: Project
        var name: String

        var cache: String { project.path("\(name)/cache") }
        var arguments: [String] { project.storage(cache: cache, runs: project.path("\(name)/runs")) }

        /// `squeeze run` of `recipe` on this storage.
        func run(_ recipe: String = "recipe/recipe.yaml", environment: [String: String?] = [:]) throws -> SqueezeCLI.Result {
            try project.squeeze(["run", recipe] + arguments, environment: environment, timeout: 900)
        }

        func record(of result: SqueezeCLI.Result) throws -> RunJSON {
            try project.runRecord(try #require(result.runID, "\(result)"), runs: project.path("\(name)/runs"))
        }

        /// The stage entry of `key`: its outputs and metrics as canonical JSON.
        func entry(_ key: String) throws -> (outputs: String, metrics: String) {
            let data = try Data(contentsOf: URL(fileURLWithPath: cache + "/stages/\(key).json"))
            let entry = try JSONDecoder().decode(JSONValue.self, from: data)
            return (try #require(entry["outputs"]).canonical, try #require(entry["metrics"]).canonical)
        }

        func area(_ key: String) -> String { cache + "/resumable/\(key)" }

        /// The checkpoints of `phase` in `key`'s area.
        func checkpoints(_ key: String, phase: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: area(key) + "/" + phase)) ?? []).sorted()
        }

        /// The log of `stage` in the run of `result`.
        func log(_ result: SqueezeCLI.Result, stage: String) -> String {
            project.read("\(name)/runs/\(result.runID ?? "")/logs/\(stage).log") ?? ""
        }
    }

    /// The recipe with `checkpoint_every: 1` added to `stage`'s `with:`, as `recipe/resume.yaml`.
    static func writeResumeRecipe(_ project: Project, stage: String) throws -> String {
        let recipe = try #require(project.read("recipe/recipe.yaml"))
        let lines = recipe.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "\(stage):" }),
              let with = lines[start...].firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "with:" })
        else { throw SqueezeCLI.Failure(description: "no `with:` of \(stage) in \(recipe)") }
        let indent = String(lines[with].prefix { $0 == " " }) + "  "
        var changed = lines
        changed.insert(indent + "checkpoint_every: 1", at: with + 1)
        try project.write("recipe/resume.yaml", changed.joined(separator: "\n"))
        return "recipe/resume.yaml"
    }

    /// The uninterrupted run: the stage's key and its entry.
    static func uninterrupted(_ project: Project, stage: String) throws -> (key: String, outputs: String, metrics: String) {
        let storage = Storage(project: project, name: "straight")
        let result = try storage.run()
        #expect(result.status == 0, "\(result)")
        let key = try #require(try storage.record(of: result).stage(stage)?.key)
        #expect(!FileManager.default.fileExists(atPath: storage.area(key)), "no checkpoint without checkpoint_every at 10m")
        let entry = try storage.entry(key)
        return (key, entry.outputs, entry.metrics)
    }

    /// Reruns `recipe` on `storage` without hooks and checks that `stage`
    /// resumed from `step` (of `phase`), finished with `expected`'s bits and left no area.
    static func expectResumed(
        _ storage: Storage, _ recipe: String, stage: String, from resumed: [(phase: String, step: Int)],
        expected: (key: String, outputs: String, metrics: String), sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let rerun = try storage.run(recipe)
        #expect(rerun.status == 0, "\(rerun)", sourceLocation: sourceLocation)
        let record = try storage.record(of: rerun)
        #expect(record.stage(stage)?.key == expected.key, sourceLocation: sourceLocation)
        let log = storage.log(rerun, stage: stage)
        for (phase, step) in resumed {
            let line = "resumed from the checkpoint at step \(step) of "
            #expect(log.contains(line) && (phase == "train" || log.contains("(\(phase))")), "\(log)", sourceLocation: sourceLocation)
        }
        #expect(!log.contains("warning: discarding"), "\(log)", sourceLocation: sourceLocation)
        let entry = try storage.entry(expected.key)
        #expect(entry.outputs == expected.outputs, "outputs differ from the uninterrupted run", sourceLocation: sourceLocation)
        #expect(entry.metrics == expected.metrics, "metrics differ:\n\(entry.metrics)\n\(expected.metrics)", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: storage.area(expected.key)), "the area is removed once the entry is saved",
                sourceLocation: sourceLocation)
    }

    /// Uninterrupted run, then a run that exits right after the checkpoint of
    /// each `stop` in turn, then a clean rerun: it resumes and its bits are the uninterrupted run's.
    static func expectBitIdenticalResume(_ project: Project, stage: String, stops: [(phase: String, step: Int)]) throws {
        let expected = try uninterrupted(project, stage: stage)
        let recipe = try writeResumeRecipe(project, stage: stage)
        let storage = Storage(project: project, name: "resumed")
        var resumedFrom: [(phase: String, step: Int)] = []
        for stop in stops {
            let stopped = try storage.run(recipe, environment: ["SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT": "\(stage):\(stop.phase):\(stop.step)"])
            #expect(stopped.exitedNormally && stopped.status == 86, "the stage stops itself after the checkpoint: \(stopped)")
            #expect(storage.checkpoints(expected.key, phase: stop.phase) == [String(format: "checkpoint-%010d", stop.step)],
                    "only the latest checkpoint is kept")
            if !resumedFrom.isEmpty {
                #expect(storage.log(stopped, stage: stage).contains("resumed from the checkpoint at step"))
            }
            resumedFrom.append(stop)
        }
        try expectResumed(storage, recipe, stage: stage, from: [resumedFrom[resumedFrom.count - 1]], expected: expected)
    }

    // MARK: The four stage types

    @Test func finetuneResumesBitIdentically() throws {
        let project = try Self.project("resume-finetune", stages: Self.finetune)
        try Self.expectBitIdenticalResume(project, stage: "tuned", stops: [("train", 6)])
    }

    @Test func causalLMResumesBitIdentically() throws {
        let project = try Self.project("resume-causal-lm", stages: Self.causalLM, decoder: true)
        try Self.expectBitIdenticalResume(project, stage: "lm", stops: [("train", 7)])
    }

    /// A sparse model keeps its masks through the checkpoint: fine-tuning a
    /// Wanda-pruned decoder resumes to the same bits (and zeros).
    @Test func sparseDecoderFineTuneResumesBitIdentically() throws {
        let stages = """
              pretrain:
                uses: train/causal-lm
                with:
                  config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true}
                  tokenizer: ${bpe.tokenizer}
                  data: ${text.dataset}
                  steps: 10
                  lr: 0.01
                  batch_size: 8
              wanda:
                uses: prune/oneshot
                with: {model: "${pretrain.model}", data: "${text.dataset}", method: wanda, sparsity: 0.5, calibration: {samples: 8, seq_len: 16, batch_size: 4}}
              recover:
                uses: train/causal-lm
                with:
                  model: ${wanda.model}
                  data: ${text.dataset}
                  steps: 12
                  lr: 0.003
                  batch_size: 8
                  weight_decay: 0.01
                  eval_every: 4
                  log_every: 5
            """
        let project = try Self.project("resume-sparse", stages: stages, decoder: true)
        try Self.expectBitIdenticalResume(project, stage: "recover", stops: [("train", 6)])
    }

    @Test func bertDistillationResumesBitIdentically() throws {
        let project = try Self.project("resume-distill", stages: Self.bertDistill)
        try Self.expectBitIdenticalResume(project, stage: "student", stops: [("train", 5)])
    }

    @Test func decoderDistillationResumesBitIdentically() throws {
        let project = try Self.project("resume-decoder-distill", stages: Self.decoderDistill, decoder: true)
        try Self.expectBitIdenticalResume(project, stage: "student", stops: [("train", 5)])
    }

    /// Stopped while pruning, then again in the fine-tune that follows: the
    /// second rerun resumes the fine-tune without pruning again.
    @Test func cofiResumesBitIdenticallyInBothPhases() throws {
        let project = try Self.project("resume-cofi", stages: Self.cofi)
        try Self.expectBitIdenticalResume(project, stage: "pruned", stops: [("prune", 6), ("finetune", 3)])
    }

    // MARK: Kill, timeout, corruption, gc

    /// A real SIGKILL of the whole process while the stage waits after its checkpoint.
    @Test func aKilledRunResumes() throws {
        let project = try Self.project("resume-kill", stages: Self.finetune)
        let expected = try Self.uninterrupted(project, stage: "tuned")
        let recipe = try Self.writeResumeRecipe(project, stage: "tuned")
        let storage = Storage(project: project, name: "killed")
        let background = try SqueezeCLI.start(
            ["run", recipe] + storage.arguments, in: project.root, environment: ["SQUEEZE_TEST_PAUSE_AFTER_CHECKPOINT": "tuned:train:4"])
        let deadline = Date().addingTimeInterval(300)
        while storage.checkpoints(expected.key, phase: "train") != ["checkpoint-0000000004"], Date() < deadline, background.isRunning {
            usleep(50_000)
        }
        #expect(storage.checkpoints(expected.key, phase: "train") == ["checkpoint-0000000004"])
        background.killHard()
        let killed = background.wait(timeout: 30)
        #expect(!killed.exitedNormally && killed.status == SIGKILL, "\(killed)")
        try Self.expectResumed(storage, recipe, stage: "tuned", from: [("train", 4)], expected: expected)
    }

    /// A `resources.time` TIMEOUT keeps the checkpoint; the rerun resumes from it.
    @Test func aTimedOutStageResumes() throws {
        let limited = Self.finetune + "\n    resources: {time: 20s}"
        let project = try Self.project("resume-timeout", stages: limited)
        let expected = try Self.uninterrupted(project, stage: "tuned")
        let recipe = try Self.writeResumeRecipe(project, stage: "tuned")
        let storage = Storage(project: project, name: "timeout")
        let timedOut = try storage.run(recipe, environment: ["SQUEEZE_TEST_PAUSE_AFTER_CHECKPOINT": "tuned:train:8"])
        #expect(timedOut.status == 1 && timedOut.stderr.contains("TIMEOUT"), "\(timedOut)")
        #expect(storage.checkpoints(expected.key, phase: "train") == ["checkpoint-0000000008"])
        try Self.expectResumed(storage, recipe, stage: "tuned", from: [("train", 8)], expected: expected)
    }

    /// A checkpoint that does not load is discarded with a warning; the stage
    /// starts from scratch and still gives the uninterrupted run's bits.
    @Test func aCorruptCheckpointIsDiscarded() throws {
        let project = try Self.project("resume-corrupt", stages: Self.finetune)
        let expected = try Self.uninterrupted(project, stage: "tuned")
        let recipe = try Self.writeResumeRecipe(project, stage: "tuned")
        let cases: [(name: String, damage: (String) throws -> Void, reason: String)] = [
            ("truncated", { directory in
                let path = directory + "/tensors.safetensors"
                let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
            }, "tensors.safetensors"),
            ("other-format", { directory in
                let path = directory + "/state.json"
                let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"format\":1", with: "\"format\":99")
                try text.write(toFile: path, atomically: false, encoding: .utf8)
            }, "checkpoint format 99"),
            ("garbage-state", { directory in
                try "{not json".write(toFile: directory + "/state.json", atomically: false, encoding: .utf8)
            }, "state.json"),
        ]
        for damage in cases {
            let storage = Storage(project: project, name: damage.name)
            let stopped = try storage.run(recipe, environment: ["SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT": "tuned:train:6"])
            #expect(stopped.status == 86, "\(stopped)")
            try damage.damage(storage.area(expected.key) + "/train/checkpoint-0000000006")
            let rerun = try storage.run(recipe)
            #expect(rerun.status == 0, "\(rerun)")
            let log = storage.log(rerun, stage: "tuned")
            #expect(log.contains("warning: discarding the checkpoint") && log.contains(damage.reason), "\(damage.name): \(log)")
            #expect(!log.contains("resumed from"), "\(log)")
            let entry = try storage.entry(expected.key)
            #expect(entry.outputs == expected.outputs && entry.metrics == expected.metrics, "\(damage.name)")
            #expect(!FileManager.default.fileExists(atPath: storage.area(expected.key)))
        }
    }

    /// `squeeze cache gc` removes an area whose stage already has an entry.
    @Test func cacheGCRemovesAnOrphanedArea() throws {
        let project = try Self.project("resume-gc", stages: Self.finetune)
        let storage = Storage(project: project, name: "gc")
        let recipe = try Self.writeResumeRecipe(project, stage: "tuned")
        let stopped = try storage.run(recipe, environment: ["SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT": "tuned:train:3"])
        #expect(stopped.status == 86, "\(stopped)")
        let finished = try storage.run()
        #expect(finished.status == 0, "\(finished)")
        let key = try #require(try storage.record(of: finished).stage("tuned")?.key)
        #expect(!FileManager.default.fileExists(atPath: storage.area(key)), "resumed and removed by the runner")

        // A leftover area (as after a crash between saving the entry and removing the area) and a live one.
        try FileManager.default.createDirectory(atPath: storage.area(key) + "/train/checkpoint-0000000003", withIntermediateDirectories: true)
        let unfinished = String(repeating: "a", count: 64)
        try FileManager.default.createDirectory(atPath: storage.area(unfinished) + "/train", withIntermediateDirectories: true)
        let gc = try project.squeeze(["cache", "gc"] + storage.arguments)
        #expect(gc.status == 0 && gc.stdout.contains("1 checkpoint areas"), "\(gc)")
        #expect(!FileManager.default.fileExists(atPath: storage.area(key)))
        #expect(FileManager.default.fileExists(atPath: storage.area(unfinished)), "a recent unfinished area is kept")
        let all = try project.squeeze(["cache", "gc", "--keep-checkpoints-days", "0"] + storage.arguments)
        #expect(all.status == 0 && !FileManager.default.fileExists(atPath: storage.area(unfinished)), "\(all)")
    }

    /// `--force` recomputes from scratch (it checks determinism) instead of resuming.
    @Test func aForcedRerunDoesNotResume() throws {
        let project = try Self.project("resume-force", stages: Self.finetune)
        let storage = Storage(project: project, name: "force")
        let recipe = try Self.writeResumeRecipe(project, stage: "tuned")
        let stopped = try storage.run(recipe, environment: ["SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT": "tuned:train:5"])
        #expect(stopped.status == 86, "\(stopped)")
        let forced = try project.squeeze(["run", recipe, "--force", "tuned"] + storage.arguments, timeout: 900)
        #expect(forced.status == 0, "\(forced)")
        let log = storage.log(forced, stage: "tuned")
        #expect(!log.contains("resumed from") && log.contains("checkpoint at step 1: "), "from the first update: \(log)")
    }

    /// `checkpoint_every` takes updates or minutes and nothing else.
    @Test func checkpointEveryIsValidated() throws {
        let project = try Self.project("resume-validate", stages: Self.finetune + "\n      checkpoint_every: 10 minutes")
        try project.expectInvalidRecipe("`checkpoint_every` must be a number of updates or of minutes, got 10 minutes")
        try project.write("recipe/recipe.yaml", TinySentiment.recipe(name: "v", stages: Self.finetune + "\n      checkpoint_every: 0"))
        try project.expectInvalidRecipe("`checkpoint_every` must be a number of updates or of minutes, got 0")
        try project.write("recipe/recipe.yaml", TinySentiment.recipe(name: "v", stages: Self.finetune + "\n      checkpoint_every: 5m"))
        let valid = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(valid.status == 0, "\(valid)")
        let referenced = TinySentiment.recipe(name: "v", stages: Self.finetune + "\n      checkpoint_every: ${vars.every}")
            .replacingOccurrences(of: "seed: 11\n", with: "seed: 11\nvars: {every: 3}\n")
        try project.write("recipe/recipe.yaml", referenced)
        let resolved = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(resolved.status == 0, "a reference is checked once resolved: \(resolved)")
    }
}
