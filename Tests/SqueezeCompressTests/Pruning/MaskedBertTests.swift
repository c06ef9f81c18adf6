import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct MaskedBertTests {
    /// The C kernels keep the finite-difference checks fast in debug builds.
    let backend = CPUBackend(threads: 2)

    static func allUnits(_ model: BertModel) throws -> CoFiMasks {
        try CoFiMasks(structure: CoFiStructure(model: model), units: Set(CoFiUnit.allCases), seed: 1)
    }

    /// With every mask exactly 1 the masked forward is `BertModel`'s: the
    /// layer outputs bit for bit (same fused ops), the logits to rounding
    /// (the pooler path of `BertModel` runs the last layer for one token).
    @Test(arguments: BertPooling.allCases)
    func onesGiveTheUnmaskedModel(pooling: BertPooling) throws {
        let model = try TinyBert.model(initializerRange: 0.5, pooling: pooling)
        let masks = try Self.allUnits(model)
        for backend in [ReferenceBackend() as any Backend, CPUBackend(threads: 2)] {
            let eager = Eager(backend: backend)
            let inputs = masks.inputs(CoFiMaskValues(structure: masks.structure, repeating: 1)) { $0 }
            let result = MaskedBert.forward(
                eager, model.weights, config: model.config, pooling: pooling, batch: TinyBert.batch, masks: inputs)
            let logits = try model.logits(TinyBert.batch, backend: backend)
            #expect(result.logits.shape == logits.shape)
            for (x, y) in zip(result.logits.floats, logits.floats) { #expect(abs(x - y) <= 1e-6) }
            #expect(result.layerOutputs.count == 2)
            #expect(result.layerOutputs[1].floats == (try model.hiddenStates(TinyBert.batch, backend: backend)).floats)
            let unmasked = MaskedBert.forward(
                eager, model.weights, config: model.config, pooling: pooling, batch: TinyBert.batch,
                masks: .unmasked(layerCount: 2))
            #expect(unmasked.logits.floats == result.logits.floats)
        }
    }

    /// The hard masks with zeros, and soft values, used by the gradient checks.
    static func softMasks(_ structure: CoFiStructure) -> CoFiMaskValues {
        var values = CoFiMaskValues(structure: structure, repeating: 0.8)
        values.heads[0] = [0.6, 0]
        values.attentionLayers = [0.9, 0.7]
        values.intermediate[1] = (0..<12).map { (unit: Int) -> Double in unit % 4 == 0 ? 0 : 0.3 + 0.05 * Double(unit) }
        values.ffnLayers = [0.5, 1]
        values.hidden = [0.9, 0, 0.7, 1, 0.4, 0, 0.6, 1]
        return values
    }

    /// Gradients with respect to the weights and every mask input against
    /// finite differences, with dropout on, hidden dimensions pruned and for
    /// both poolings. `z_hidden` is fed through a fixed selection of its
    /// non-zero entries, so a perturbation never changes which are zero
    /// (the set `K` is where the function is not continuous).
    @Test(arguments: BertPooling.allCases)
    func gradientsMatchFiniteDifferences(pooling: BertPooling) throws {
        let model = try TinyBert.model(initializerRange: 0.5, pooling: pooling)
        let masks = try Self.allUnits(model)
        let values = Self.softMasks(masks.structure)
        let maskTensors = masks.inputs(values) { $0 }
        let kept = values.hidden.indices.filter { values.hidden[$0] != 0 }
        var selection = [Float](repeating: 0, count: kept.count * 8)
        for (row, column) in kept.enumerated() { selection[row * 8 + column] = 1 }
        let selectionTensor = Tensor(shape: [kept.count, 8], floats: selection)
        let layerMasks = maskTensors.layers.flatMap { [$0.heads, $0.attention, $0.intermediate, $0.ffn].compactMap { $0 } }
        let hiddenKept = Tensor(shape: [kept.count], floats: kept.map { Float(values.hidden[$0]) })
        let weightCount = model.weights.elements.count
        let worst = checkGradients(
            inputs: model.weights.elements + layerMasks + [hiddenKept], backend: backend, dropoutSeed: 9, elementsPerInput: 5
        ) { tape, variables in
            let weights = model.weights.replacing(with: Array(variables[0..<weightCount]))
            var next = weightCount
            func take() -> Variable {
                defer { next += 1 }
                return variables[next]
            }
            let layers = maskTensors.layers.map { _ in
                CoFiLayerMaskInputs(heads: take(), attention: take(), intermediate: take(), ffn: take())
            }
            let hiddenKept = tape.reshape(take(), [1, kept.count])
            let hidden = tape.reshape(
                tape.matmul(hiddenKept, tape.constant(selectionTensor), transposeA: false, transposeB: false, alpha: 1), [8])
            let result = MaskedBert.forward(
                tape, weights, config: model.config, pooling: pooling, batch: TinyBert.batch,
                masks: CoFiMaskInputs(layers: layers, hidden: hidden))
            let first = result.layerOutputs[0]
            let layerTerm = tape.mean(tape.multiply(first, first), axes: [0, 1, 2], keepDimensions: false)
            return tape.add(tape.crossEntropy(result.logits, labels: TinyBert.labels), layerTerm)
        }
        #expect(worst.ratio <= 1, "input \(worst.input)[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    /// The whole design end to end: sample z, run the tape, read dL/dz, apply
    /// dz/dlog α, and compare with finite differences of the loss in log α
    /// for the same uniforms.
    @Test func logAlphaGradientsMatchFiniteDifferences() throws {
        let model = try TinyBert.model(initializerRange: 0.5)
        var masks = try Self.allUnits(model)
        var generator = SeededGenerator(seed: 21)
        masks.logAlpha = masks.logAlpha.map { _ in Double(generator.uniform(in: -1..<3)) }
        func loss(_ masks: CoFiMasks) -> (loss: Double, gradient: [Double], sample: CoFiMaskSample) {
            var draws = SeededGenerator(seed: 22)
            let sample = masks.sample(generator: &draws)
            let tape = Tape(backend: backend)
            let inputs = masks.inputs(sample.values) { tape.parameter($0) }
            let parameters = model.weights.map { _, tensor in tape.constant(tensor) }
            let result = MaskedBert.forward(
                tape, parameters, config: model.config, pooling: model.pooling, batch: TinyBert.batch, masks: inputs)
            let value = tape.crossEntropy(result.logits, labels: TinyBert.labels)
            tape.backward(from: value)
            let zGradient = masks.zGradient(inputs, on: tape)
            return (Double(value.value.scalarValue), masks.logAlphaGradient(sample, zGradient: zGradient), sample)
        }
        let base = loss(masks)
        // Entries away from the clipping points, so a step keeps every zero a zero.
        let z = masks.gather(base.sample.values)
        let soft = z.indices.filter { base.sample.derivatives[$0] > 0.05 && z[$0] > 0.02 && z[$0] < 0.98 }
        #expect(soft.count > 10)
        var worst = 0.0
        for index in soft {
            var plus = masks, minus = masks
            plus.logAlpha[index] += 0.01
            minus.logAlpha[index] -= 0.01
            let numeric = (loss(plus).loss - loss(minus).loss) / 0.02
            worst = max(worst, abs(base.gradient[index] - numeric) / (1e-3 + 1e-2 * abs(numeric)))
        }
        #expect(worst <= 1)
    }
}
