import Foundation
import Testing
@testable import SqueezeTensor

/// AdamW against the scalar formula with decoupled weight decay.
@Suite struct AdamWTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]

    @Test(arguments: backends)
    func firstStepIsSignOfGradientTimesLearningRate(backend: any Backend) {
        // Step 1 from zero moments: m̂ = g and v̂ = g², so p ← p(1 − lr·wd) − lr·g/(|g| + ε).
        var parameter = Tensor(shape: [3], floats: [1, -2, 0.5])
        var m = Tensor(zeros: [3])
        var v = Tensor(zeros: [3])
        let gradient = Tensor(shape: [3], floats: [0.5, -0.25, 0])
        let settings = AdamWHyperparameters(learningRate: 0.1, weightDecay: 0.01)
        backend.adamWUpdate(parameter: &parameter, gradient: gradient, firstMoment: &m, secondMoment: &v, hyperparameters: settings, step: 1)
        let expected: [Float] = [0.999 - 0.1, -1.998 + 0.1, 0.4995]
        for (got, want) in zip(parameter.floats, expected) { #expect(abs(got - want) < 1e-6, "\(got) vs \(want)") }
        expectClose(m, Tensor(shape: [3], floats: [0.05, -0.025, 0]), "m")
        expectClose(v, Tensor(shape: [3], floats: [0.00025, 0.0000625, 0]), "v")
    }

    @Test(arguments: backends)
    func severalStepsFollowTheScalarFormula(backend: any Backend) {
        let settings = AdamWHyperparameters(learningRate: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        let gradients: [[Float]] = [[0.3, -1, 2], [0.1, -0.5, -2], [-0.2, 0, 1], [0.4, 0.4, 0.4]]
        var parameter = Tensor(shape: [3], floats: [0.5, -0.5, 2])
        var m = Tensor(zeros: [3])
        var v = Tensor(zeros: [3])
        var p: [Double] = [0.5, -0.5, 2]
        var mm: [Double] = [0, 0, 0]
        var vv: [Double] = [0, 0, 0]
        for (index, g) in gradients.enumerated() {
            let step = index + 1
            backend.adamWUpdate(
                parameter: &parameter, gradient: Tensor(shape: [3], floats: g), firstMoment: &m, secondMoment: &v,
                hyperparameters: settings, step: step)
            for i in 0..<3 {
                let gi = Double(g[i])
                p[i] -= 0.05 * 0.1 * p[i]
                mm[i] = 0.8 * mm[i] + 0.2 * gi
                vv[i] = 0.95 * vv[i] + 0.05 * gi * gi
                let mHat = mm[i] / (1 - pow(0.8, Double(step)))
                let vHat = vv[i] / (1 - pow(0.95, Double(step)))
                p[i] -= 0.05 * mHat / (vHat.squareRoot() + 1e-6)
            }
            expectClose(parameter, Tensor(shape: [3], floats: p.map { Float($0) }), "parameter after step \(step)")
        }
    }
}
