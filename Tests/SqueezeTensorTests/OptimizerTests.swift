import Testing
@testable import SqueezeTensor

@Suite struct OptimizerTests {
    /// Three AdamW steps, by hand (lr 0.1, β 0.9/0.999, ε 1e-8; decay 0.01
    /// on the weight, none on the bias; see the python in the comments):
    ///   p -= lr·wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²
    ///   p -= lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)
    @Test func adamWMatchesHandComputedSteps() {
        var parameters = [Tensor(shape: [1], floats: [1]), Tensor(shape: [1], floats: [1]), Tensor(shape: [2], floats: [5, 6])]
        var optimizer = AdamW(decayMask: [true, false, true], weightDecay: 0.01)
        let expectedWeight: [Float] = [0.899000002, 0.8714672987058463, 0.8035310672284472]
        let expectedBias: [Float] = [0.900000002, 0.8733662987078463, 0.8063015345291531]
        for (step, g) in [Float(0.5), -0.25, 2].enumerated() {
            let gradient = Tensor(shape: [1], floats: [g])
            optimizer.update(&parameters, gradients: [gradient, gradient, nil], learningRate: 0.1, backend: ReferenceBackend())
            #expect(abs(parameters[0].floats[0] - expectedWeight[step]) <= 1e-6, "weight after step \(step + 1)")
            #expect(abs(parameters[1].floats[0] - expectedBias[step]) <= 1e-6, "bias after step \(step + 1)")
        }
        #expect(optimizer.steps == [3, 3, 0])
        #expect(parameters[2].floats == [5, 6], "a parameter without a gradient is not touched")
        #expect(optimizer.firstMoments[2] == nil)
        #expect(abs((optimizer.firstMoments[0]?.floats[0] ?? 0) - 0.218) <= 1e-6)
        #expect(abs((optimizer.secondMoments[0]?.floats[0] ?? 0) - 0.00431193775) <= 1e-7)
    }

    @Test func decayMaskFollowsTheGroups() {
        let optimizer = AdamW(decayMask: [true, false], weightDecay: 0.1)
        #expect(optimizer.weightDecays == [0.1, 0])
    }

    @Test func clippingScalesToTheMaximumNorm() {
        var gradients: [Tensor?] = [Tensor(shape: [2], floats: [3, 4]), nil, Tensor(shape: [1], floats: [12])]
        let norm = clipGradientNorm(&gradients, maxNorm: 6.5, backend: ReferenceBackend())
        #expect(norm == 13)
        let factor = 6.5 / (13 + 1e-6)
        let clipped = (gradients[0]?.floats ?? []) + (gradients[2]?.floats ?? [])
        for (value, original) in zip(clipped, [Float(3), 4, 12]) {
            #expect(abs(Double(value) - Double(original) * factor) <= 1e-6)
        }
        #expect(gradients[1] == nil)
    }

    @Test func clippingLeavesSmallGradientsUnchanged() {
        let original = Tensor(shape: [3], floats: [0.1, -0.2, 0.3])
        var gradients: [Tensor?] = [original]
        let norm = clipGradientNorm(&gradients, maxNorm: 1, backend: ReferenceBackend())
        #expect(abs(norm - 0.37416574) <= 1e-6)
        #expect(gradients[0].map(bits) == bits(original))
    }

    /// Hugging Face `get_linear_schedule_with_warmup(warmup 2, total 6)` at scheduler steps 0...7.
    @Test func linearWarmupThenDecay() {
        let schedule = LinearWarmupSchedule(peak: 1, warmupSteps: 2, totalSteps: 6)
        #expect((0...7).map { schedule.learningRate(forUpdate: $0) } == [0, 0.5, 1, 0.75, 0.5, 0.25, 0, 0])
        let noWarmup = LinearWarmupSchedule(peak: 2e-5, warmupSteps: 0, totalSteps: 4)
        #expect(noWarmup.learningRate(forUpdate: 0) == 2e-5)
        #expect(noWarmup.learningRate(forUpdate: 2) == 1e-5)
    }
}
