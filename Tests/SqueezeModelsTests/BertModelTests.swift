import Foundation
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeModels

@Suite struct BertModelTests {
    let backend = ReferenceBackend()

    @Test func randomInitFollowsHuggingFace() throws {
        let model = try TinyBert.model()
        #expect(model.layerShapes == TinyBert.layerShapes)
        #expect(model.weights.layers[1].query.weight.shape == [4, 8])
        #expect(model.weights.layers[1].attentionOutput.weight.shape == [8, 4])
        #expect(model.weights.layers[1].output.weight.shape == [8, 12])
        #expect(model.weights.embeddings.layerNorm.weight.floats == [Float](repeating: 1, count: 8))
        #expect(model.weights.layers[0].query.bias.floats == [Float](repeating: 0, count: 8))
        #expect(model.weights.embeddings.word.floats[0..<8].allSatisfy { $0 == 0 }, "padding row is zero")
        let word = model.weights.embeddings.word.floats[8...]
        let std = (word.reduce(0) { $0 + Double($1) * Double($1) } / Double(word.count)).squareRoot()
        #expect(abs(std - 0.02) < 0.004)
        let again = try TinyBert.model()
        #expect(model.weights.elements.map(\.floats) == again.weights.elements.map(\.floats))
        #expect(try TinyBert.model(seed: 2).weights.embeddings.word.floats != model.weights.embeddings.word.floats)
        #expect(model.parameterCount == model.weights.elements.reduce(0) { $0 + $1.count })
    }

    @Test func namesFollowTransformersOrder() throws {
        let names = try TinyBert.model().weights.names
        #expect(names.prefix(6) == [
            "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
            "encoder.layer.0.attention.self.query.weight",
        ])
        #expect(names.suffix(4) == ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"])
        #expect(names.count == 5 + 2 * 16 + 4)
        let decay = BertModel.decayMask(names: names)
        #expect(zip(names, decay).filter(\.1).map(\.0).allSatisfy { $0.hasSuffix(".weight") && !$0.contains("LayerNorm") })
        #expect(decay.filter { $0 }.count == 3 + 2 * 6 + 2)
    }

    @Test func forwardShapesAndTapeAgreesWithEager() throws {
        let model = try TinyBert.model(initializerRange: 0.5)
        let hidden = try model.hiddenStates(TinyBert.batch, backend: backend)
        #expect(hidden.shape == [2, 5, 8])
        let logits = try model.logits(TinyBert.batch, backend: backend)
        #expect(logits.shape == [2, 3])
        let tape = Tape(backend: backend)
        let parameters = model.weights.map { _, tensor in tape.parameter(tensor) }
        let recorded = BertModel.logits(tape, parameters, config: model.config, pooling: model.pooling, batch: TinyBert.batch)
        #expect(recorded.value.floats == logits.floats)
    }

    /// With the pooler head the last layer runs for the first token only; the
    /// logits equal those computed from the full last hidden state, also when
    /// that layer's attention is pruned away.
    @Test(arguments: [TinyBert.layerShapes, [TinyBert.layerShapes[0], BertLayerShape(heads: 0, intermediateSize: 4)]])
    func poolerLogitsSkipTheLastLayersOtherTokens(layerShapes: [BertLayerShape]) throws {
        let model = try TinyBert.model(initializerRange: 0.5, layerShapes: layerShapes)
        for backend in [ReferenceBackend() as any Backend, CPUBackend(threads: 2)] {
            let eager = Eager(backend: backend)
            let hidden = BertModel.encode(eager, model.weights, config: model.config, batch: TinyBert.batch)
            let pooled = BertModel.pool(eager, hidden, weights: model.weights, pooling: .pooler, batch: TinyBert.batch)
            let full = eager.linear(pooled, weight: model.weights.classifier.weight, bias: model.weights.classifier.bias)
            let skipped = try model.logits(TinyBert.batch, backend: backend)
            #expect(skipped.shape == [2, 3])
            for (x, y) in zip(skipped.floats, full.floats) { #expect(abs(x - y) <= 1e-5) }
        }
    }

    /// Padding keys are masked: real positions do not change when more padding is added.
    @Test func paddingDoesNotChangeRealPositions() throws {
        for pooling in BertPooling.allCases {
            let model = try TinyBert.model(initializerRange: 0.5, pooling: pooling)
            let short = BertBatch(sequences: [[2, 9, 3]])
            let long = BertBatch(sequences: [[2, 9, 3]], length: 7)
            let a = try model.hiddenStates(short, backend: backend).floats
            let b = try model.hiddenStates(long, backend: backend).floats
            for (x, y) in zip(a, b.prefix(a.count)) { #expect(abs(x - y) <= 1e-5) }
            let logitsA = try model.logits(short, backend: backend).floats
            let logitsB = try model.logits(long, backend: backend).floats
            for (x, y) in zip(logitsA, logitsB) { #expect(abs(x - y) <= 1e-5, "\(pooling)") }
        }
    }

    @Test func meanPoolingAveragesRealTokens() throws {
        let model = try TinyBert.model(initializerRange: 0.5, pooling: .mean)
        let hidden = try model.hiddenStates(TinyBert.batch, backend: backend).floats
        let eager = Eager(backend: backend)
        let pooled = BertModel.pool(eager, Tensor(shape: [2, 5, 8], floats: hidden), weights: model.weights, pooling: .mean, batch: TinyBert.batch).floats
        for column in 0..<8 {
            let expected = (0..<3).reduce(Float(0)) { $0 + hidden[(5 + $1) * 8 + column] } / 3
            #expect(abs(pooled[8 + column] - expected) <= 1e-6)
        }
    }

    /// The whole model + classifier loss against finite differences, with
    /// dropout on (the masks repeat for a fixed seed), for both poolings and
    /// for layers pruned to nothing.
    @Test(arguments: [
        (BertPooling.pooler, TinyBert.layerShapes),
        (BertPooling.mean, [BertLayerShape(heads: 0, intermediateSize: 16), BertLayerShape(heads: 1, intermediateSize: 0)]),
    ])
    func wholeModelGradientsMatchFiniteDifferences(pooling: BertPooling, layerShapes: [BertLayerShape]) throws {
        let model = try TinyBert.model(initializerRange: 0.5, layerShapes: layerShapes, pooling: pooling)
        let worst = checkGradients(
            inputs: model.weights.elements, backend: backend, dropoutSeed: 9, elementsPerInput: 6
        ) { tape, variables in
            let weights = model.weights.replacing(with: variables)
            let logits = BertModel.logits(tape, weights, config: model.config, pooling: pooling, batch: TinyBert.batch)
            return tape.crossEntropy(logits, labels: TinyBert.labels)
        }
        let names = model.weights.names
        #expect(worst.ratio <= 1, "\(names[worst.input])[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    /// The CPU backend's whole-model gradients (dropout on) agree with the reference's.
    @Test func cpuGradientsMatchReferenceGradients() throws {
        let model = try TinyBert.model(initializerRange: 0.5, pooling: .mean)
        func gradients(_ backend: any Backend) throws -> [Tensor?] {
            let tape = Tape(backend: backend, dropoutSeed: 3)
            let (loss, parameters) = try model.trainingLoss(on: tape, batch: TinyBert.batch, labels: TinyBert.labels)
            tape.backward(from: loss)
            return parameters.map { _, variable in tape.gradient(of: variable) }.elements
        }
        let reference = try gradients(backend)
        let cpu = try gradients(CPUBackend(threads: 2))
        for (name, (a, b)) in zip(model.weights.names, zip(reference, cpu)) {
            #expect((a == nil) == (b == nil), "\(name)")
            guard let x = a?.floats, let y = b?.floats else { continue }
            let scale = x.reduce(Float(1e-3)) { max($0, abs($1)) }
            let worst = zip(x, y).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            #expect(worst <= 1e-4 * scale, "\(name): \(worst) at scale \(scale)")
        }
    }

    @Test func trainingLossMatchesInferenceWithoutDropout() throws {
        let model = try TinyBert.model(initializerRange: 0.5)
        let tape = Tape(backend: backend)
        let (loss, parameters) = try model.trainingLoss(on: tape, batch: TinyBert.batch, labels: TinyBert.labels)
        let logits = try model.logits(TinyBert.batch, backend: backend)
        #expect(loss.value.scalarValue == backend.crossEntropy(logits, labels: TinyBert.labels).loss.scalarValue)
        tape.backward(from: loss)
        let gradients = parameters.map { _, variable in tape.gradient(of: variable) }
        #expect(gradients.elements.allSatisfy { $0 != nil })
        #expect(gradients.classifier.weight?.shape == [3, 8])
    }

    @Test func rejectsBadInput() throws {
        let model = try TinyBert.model()
        func message(_ batch: BertBatch) -> String? {
            do {
                _ = try model.logits(batch, backend: backend)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message(BertBatch(sequences: [[2, 20]])) == "input id 20 is outside 0..<20")
        #expect(message(BertBatch(sequences: [[2, -1]])) == "input id -1 is outside 0..<20")
        #expect(message(BertBatch(sequences: [Array(repeating: 2, count: 13)])) == "sequence length 13 exceeds max_position_embeddings 12")
        #expect(message(BertBatch(sequences: [])) == "empty batch [0, 0]")
        #expect(message(BertBatch(inputIDs: Tensor(shape: [2], int32s: [1, 2])))?.contains("must be i32 [batch, length]") == true)
        #expect(message(BertBatch(inputIDs: Tensor(shape: [1, 2], int32s: [1, 2]), attentionMask: Tensor(shape: [1, 2], int32s: [1, 2])))
            == "attention mask value 2 is outside 0..<2")
        #expect(message(BertBatch(inputIDs: Tensor(shape: [1, 2], int32s: [1, 2]), tokenTypeIDs: Tensor(shape: [1, 2], int32s: [0, 2])))
            == "token type id 2 is outside 0..<2")
        #expect(throws: BertInputError.self) {
            try model.trainingLoss(on: Tape(backend: backend), batch: TinyBert.batch, labels: Tensor(shape: [2], int32s: [0, 3]))
        }
    }

    @Test func batchPadsSequences() {
        let batch = BertBatch(sequences: [[5, 6, 7], [8]], padID: 0, length: 4)
        #expect(batch.inputIDs.int32s == [5, 6, 7, 0, 8, 0, 0, 0])
        #expect(batch.attentionMask.int32s == [1, 1, 1, 0, 1, 0, 0, 0])
        #expect(batch.inputIDs.shape == [2, 4])
    }
}
