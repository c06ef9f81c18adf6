import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import Testing

/// A 2:4-masked model artifact through the stages: `train/finetune` and
/// `distill/kd` load it, keep its masks through training and write their
/// outputs sparse with the same masks (the student is built from the masked
/// teacher's layers); `eval/classification` reports each
/// masked layer's zeros and the (smaller) file size; the quantizers read it
/// as they read a dense model, and the report reads the run.
@Suite struct SparseArtifactStagesTests {
    static let recipe = TinySentiment.recipe(name: "tiny-sparse", stages: """
      tuned:
        uses: train/finetune
        with:
          model: ${base.model}
          data: ${data.dataset}
          steps: 20
          batch_size: 8
          lr: 3.0e-3
          max_seq_len: 16
          weight_decay: 0.1
      student:
        uses: distill/kd
        with:
          teacher: ${tuned.model}
          init: {from: teacher, layers: [0, 1]}
          data: ${data.dataset}
          steps: 20
          batch_size: 8
          lr: 3.0e-3
          max_seq_len: 16
          weight_decay: 0.1
          hidden_loss_weight: 0.5
      int8:
        uses: quantize/dynamic
        with:
          model: ${tuned.model}
      int4:
        uses: quantize/weight-only
        with:
          model: ${tuned.model}
          weights: {bits: 4, group_size: 8}
      eval:
        uses: eval/classification
        with:
          models:
            tuned: ${tuned.model}
            student: ${student.model}
            int8: ${int8.model}
            int4: ${int4.model}
          data: ${data.dataset}
          latency_samples: 0
          speed_repeats: 0
    """)

    @Test func finetuneAndDistillKeepTheMasksAndEvalReportsThem() throws {
        let project = try TinySentiment.makeProject("sparse-stages", recipe: Self.recipe)
        let tiny = project.path("recipe/tiny")
        let masked = try BertModel(directory: tiny).maskedNofM()
        try masked.save(toDirectory: tiny)

        var denseBytes: [String: Int] = [:]
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")
        for stage in ["tuned", "student"] {
            let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: stage, output: "model")
            try ModelArtifact(directory: directory).verify()
            let model = try BertModel(directory: directory)
            #expect(model.masks == masked.masks, "\(stage) keeps the masks")
            #expect(model.keepsItsMasks, "\(stage): every 2:4 group holds at most 2 non-zeros, zeros where pruned")
            let name = "encoder.layer.0.intermediate.dense.weight"
            #expect(model.namedParameters.first { $0.name == name }?.tensor.floats
                != masked.namedParameters.first { $0.name == name }?.tensor.floats, "\(stage) trained")
            let file = try SafetensorsFile(path: directory + "/model.safetensors")
            #expect(file.entries["bert." + name] == nil && file.entries["bert." + name + ".sparse_mask"] != nil, "\(stage) is stored sparse")
            // The same weights saved without masks, for the size comparison below.
            let dense = try BertModel(config: model.config, weights: model.weights, pooling: model.pooling)
            try dense.save(toDirectory: project.path("dense-\(stage)"))
            denseBytes[stage] = try FileManager.default.attributesOfItem(atPath: project.path("dense-\(stage)/model.safetensors"))[.size] as? Int
        }

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        for model in ["tuned", "student"] {
            let layers = try #require(eval["\(model).masked_layers"] as? [String: [String: Any]], "\(eval)")
            #expect(layers.count == masked.masks.count)
            for (name, entry) in layers {
                #expect(entry["pattern"] as? String == "2:4", "\(name)")
                #expect((entry["zero_share"] as? Double ?? 0) >= 0.5, "\(name): \(entry)")
            }
            let size = try #require(eval["\(model).size_bytes"] as? Int)
            let dense = try #require(denseBytes[model])
            #expect(size > 0 && size < dense, "\(model): \(size) bytes sparse, \(dense) dense")
        }
        for model in ["int8", "int4"] {
            #expect(eval["\(model).accuracy"] is Double, "\(eval)")
        }
        for format in [[String](), ["--json"], ["--html", project.path("report.html")]] {
            let report = try project.squeeze(["report", try #require(result.runID)] + format + project.storage())
            #expect(report.status == 0, "\(report)")
        }
    }
}
