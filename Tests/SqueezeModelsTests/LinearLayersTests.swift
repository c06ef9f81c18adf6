import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

@Suite struct LinearLayersTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]

    static func bits(_ tensor: Tensor) -> [UInt32] { tensor.contiguous().floats.map(\.bitPattern) }

    /// The real-token rows `[tokens, width]` of a `[B, T, width]` activation.
    static func realRows(_ tensor: Tensor, mask: Tensor) -> [Float] {
        let values = tensor.contiguous().floats
        let width = tensor.shape[2]
        var rows: [Float] = []
        for (position, flag) in mask.int32s.enumerated() where flag != 0 {
            rows += values[(position * width)..<((position + 1) * width)]
        }
        return rows
    }

    @Test func namesFollowTheHuggingFaceModulesAndSkipEmptyLayers() throws {
        let model = try TinyBert.model()
        let blocks = model.linearBlocks
        #expect(blocks.map(\.name) == ["encoder.layer.0", "encoder.layer.1"])
        #expect(blocks[0].layers.map(\.name) == [
            "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value",
            "encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense",
        ])
        // Layer 1 has one head of 4 and an FFN of 12.
        #expect(blocks[1].layers.map { [$0.outFeatures, $0.inFeatures] } == [[4, 8], [4, 8], [4, 8], [8, 4], [12, 8], [8, 12]])
        #expect(model.linearLayers.suffix(2).map(\.name) == ["pooler.dense", "classifier"])
        // The module names are those of `namedParameters` without `.weight`.
        let parameterNames = Set(model.namedParameters.map(\.name))
        #expect(model.linearLayers.allSatisfy { parameterNames.contains($0.name + ".weight") })

        let pruned = try TinyBert.model(layerShapes: [
            BertLayerShape(heads: 0, intermediateSize: 16), BertLayerShape(heads: 2, intermediateSize: 0),
        ])
        #expect(pruned.linearBlocks[0].layers.map(\.name) == ["encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense"])
        #expect(pruned.linearBlocks[1].layers.map(\.name).map { $0.replacingOccurrences(of: "encoder.layer.1.", with: "") } == [
            "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        ])
        #expect(throws: LinearViewError.self) { try pruned.linearWeight("encoder.layer.0.attention.self.query") }
    }

    @Test func weightsAreReadAndWrittenByName() throws {
        var model = try TinyBert.model()
        let name = "encoder.layer.1.intermediate.dense"
        #expect(try model.linearWeight(name).shape == [12, 8])
        #expect(try Self.bits(model.linearBias(name) ?? Tensor(zeros: [0])) == Self.bits(model.weights.layers[1].intermediate.bias))
        let replacement = Tensor(shape: [12, 8], floats: (0..<96).map { Float($0) })
        try model.setLinearWeight(name, to: replacement)
        #expect(model.weights.layers[1].intermediate.weight.floats == replacement.floats)
        try model.setLinearBias("classifier", to: Tensor(shape: [3], floats: [1, 2, 3]))
        #expect(model.weights.classifier.bias.floats == [1, 2, 3])
        #expect(throws: LinearViewError.self) { try model.setLinearWeight(name, to: Tensor(zeros: [8, 12])) }
        #expect(throws: LinearViewError.self) { try model.setLinearWeight("encoder.layer.2.intermediate.dense", to: replacement) }
        #expect(throws: LinearViewError.self) { try model.linearWeight("encoder.layer.0.attention") }

        // Masks by layer name: applied at once, kept by later weight writes, lifted by nil.
        let mask = try WeightMask(shape: [12, 8], pattern: .nOfM(n: 2, m: 4), keep: (0..<96).map { $0 % 4 < 2 })
        try model.setLinearMask(name, to: mask)
        #expect(model.linearMasks == [name: mask] && model.masks == [name + ".weight": mask])
        #expect(try model.linearWeight(name).floats.enumerated().allSatisfy { $0.offset % 4 < 2 || $0.element == 0 })
        try model.setLinearWeight(name, to: replacement)
        #expect(try model.linearWeight(name).floats.enumerated().allSatisfy { $0.offset % 4 < 2 || $0.element == 0 })
        #expect(throws: LinearViewError.self) { try model.setLinearMask("encoder.layer.0.intermediate.dense", to: mask) }
        try model.setLinearMask(name, to: nil)
        #expect(model.linearMasks.isEmpty)
    }

    @Test(arguments: [false, true])
    func runningEveryBlockUnchangedReproducesTheModelBitForBit(pruned: Bool) throws {
        let shapes = pruned
            ? [BertLayerShape(heads: 0, intermediateSize: 16), BertLayerShape(heads: 1, intermediateSize: 0)] : TinyBert.layerShapes
        for pooling in [BertPooling.pooler, .mean] {
            let model = try TinyBert.model(seed: 7, initializerRange: 0.5, layerShapes: shapes, pooling: pooling)
            let batches = [TinyBert.batch, BertBatch(sequences: [[2, 4, 6, 3]])]
            for backend in Self.backends {
                var driven = model
                var seen: [String] = []
                let states = try SequentialCalibration.run(
                    &driven, batches: batches, select: model.linearBlocks.flatMap(\.layers).map(\.name), backend: backend
                ) { block, inputs in
                    seen += block.layers.map(\.name).filter { inputs[$0] != nil }
                    return [:]
                }
                #expect(seen == model.linearBlocks.flatMap(\.layers).map(\.name))
                #expect(states.count == batches.count)
                for (state, batch) in zip(states, batches) {
                    #expect(Self.bits(state.hidden) == Self.bits(try model.hiddenStates(batch, backend: backend)))
                    let logits = BertModel.classify(
                        Eager(backend: backend), state.hidden, weights: model.weights, config: model.config, pooling: model.pooling,
                        batch: batch)
                    #expect(Self.bits(logits) == Self.bits(try model.logits(batch, backend: backend)))
                }
            }
        }
    }

    @Test func capturedInputsAreTheLayersInputsOnRealTokensOnly() throws {
        let model = try TinyBert.model(seed: 3, initializerRange: 0.5)
        let batch = TinyBert.batch
        for backend in Self.backends {
            let ops = Eager(backend: backend)
            let input = try model.blockInput(for: batch, backend: backend)
            let names = Set(model.linearBlocks[0].layers.map(\.name))
            let (output, inputs) = try model.runBlock(0, on: input, capturing: names, backend: backend)
            #expect(inputs.keys.sorted() == names.sorted())
            // 5 + 3 real tokens; the two padding positions of the second sequence are left out.
            #expect(inputs.values.allSatisfy { $0.shape[0] == 8 })

            // The layer by hand, as `encoderLayer` computes it.
            let layer = model.weights.layers[0]
            let x = input.hidden
            let mask = batch.attentionMask
            let (b, t, d, heads) = (2, 5, 4, 2)
            func split(_ linear: LinearWeights<Tensor>) -> Tensor {
                ops.transpose(ops.reshape(ops.linear(x, weight: linear.weight, bias: linear.bias), [b, t, heads, d]), 1, 2)
            }
            let context = ops.attention(
                query: split(layer.query), key: split(layer.key), value: split(layer.value),
                bias: BertModel.attentionBias(mask), scale: 1 / Float(d).squareRoot(), dropout: 0)
            let merged = ops.reshape(ops.transpose(context, 1, 2), [b, t, heads * d])
            let attended = ops.linear(merged, weight: layer.attentionOutput.weight, bias: layer.attentionOutput.bias)
            let epsilon = Float(model.config.layerNormEpsilon)
            let afterAttention = ops.residualLayerNorm(
                attended, residual: x, gamma: layer.attentionLayerNorm.weight, beta: layer.attentionLayerNorm.bias, epsilon: epsilon, dropout: 0)
            let activated = ops.gelu(ops.linear(afterAttention, weight: layer.intermediate.weight, bias: layer.intermediate.bias))
            let fed = ops.linear(activated, weight: layer.output.weight, bias: layer.output.bias)
            let expectedOutput = ops.residualLayerNorm(
                fed, residual: afterAttention, gamma: layer.outputLayerNorm.weight, beta: layer.outputLayerNorm.bias, epsilon: epsilon, dropout: 0)

            let prefix = "encoder.layer.0."
            for suffix in ["attention.self.query", "attention.self.key", "attention.self.value"] {
                #expect(inputs[prefix + suffix]?.floats == Self.realRows(x, mask: mask))
            }
            #expect(inputs[prefix + "attention.output.dense"]?.floats == Self.realRows(merged, mask: mask))
            #expect(inputs[prefix + "intermediate.dense"]?.floats == Self.realRows(afterAttention, mask: mask))
            #expect(inputs[prefix + "output.dense"]?.floats == Self.realRows(activated, mask: mask))
            #expect(Self.bits(output.hidden) == Self.bits(expectedOutput))

            // Capturing only some layers captures only those.
            let some = try model.runBlock(0, on: input, capturing: [prefix + "output.dense"], backend: backend).inputs
            #expect(some.keys.sorted() == [prefix + "output.dense"])
        }
    }

    @Test func aBlockIsCalibratedOnTheCompressedOutputsOfTheBlocksBefore() throws {
        let model = try TinyBert.model(seed: 5, initializerRange: 0.5)
        let backend = ReferenceBackend()
        let zeroed = Tensor(zeros: [16, 8])
        let target = "encoder.layer.0.intermediate.dense"
        let observed = "encoder.layer.1.attention.self.query"

        var driven = model
        var captured: Tensor?
        try SequentialCalibration.run(
            &driven, batches: [TinyBert.batch], select: [target, observed], backend: backend
        ) { block, inputs in
            if let input = inputs[observed] { captured = input }
            return block.index == 0 ? [target: zeroed] : [:]
        }
        #expect(try driven.linearWeight(target).floats == zeroed.floats)

        // By hand: block 1's query sees block 0's output computed with the new weight.
        var changed = model
        try changed.setLinearWeight(target, to: zeroed)
        let afterChange = try changed.runBlock(0, on: changed.blockInput(for: TinyBert.batch, backend: backend), capturing: [], backend: backend)
        let expected = try changed.runBlock(1, on: afterChange.output, capturing: [observed], backend: backend).inputs[observed]
        let unchanged = try model.runBlock(0, on: model.blockInput(for: TinyBert.batch, backend: backend), capturing: [], backend: backend)
        let original = try model.runBlock(1, on: unchanged.output, capturing: [observed], backend: backend).inputs[observed]
        #expect(captured?.floats == expected?.floats)
        #expect(captured?.floats != original?.floats)
    }

    @Test func theDriverRejectsUnknownLayersAndForeignUpdates() throws {
        var model = try TinyBert.model()
        let backend = ReferenceBackend()
        #expect(throws: LinearViewError.self) {
            try SequentialCalibration.run(&model, batches: [TinyBert.batch], select: ["classifier"], backend: backend) { _, _ in [:] }
        }
        #expect(throws: LinearViewError.self) {
            try SequentialCalibration.run(
                &model, batches: [TinyBert.batch], select: ["encoder.layer.0.output.dense"], backend: backend
            ) { _, _ in ["encoder.layer.0.intermediate.dense": Tensor(zeros: [16, 8])] }
        }
        // Blocks after the last selected one do not run; the concatenated form stacks every batch's rows.
        var rows = 0
        let states = try SequentialCalibration.run(
            &model, batches: [TinyBert.batch, TinyBert.batch], select: ["encoder.layer.0.output.dense"], backend: backend
        ) { _, inputs in
            rows = inputs["encoder.layer.0.output.dense"]?.shape[0] ?? 0
            return [:]
        }
        #expect(rows == 16)
        let firstBlock = try model.runBlock(0, on: model.blockInput(for: TinyBert.batch, backend: backend), capturing: [], backend: backend)
        #expect(states.map { Self.bits($0.hidden) } == [Self.bits(firstBlock.output.hidden), Self.bits(firstBlock.output.hidden)])
    }
}
