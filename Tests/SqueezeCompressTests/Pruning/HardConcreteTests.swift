import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct HardConcreteTests {
    /// Central difference of `f` at `x`.
    static func derivative(_ x: Double, step: Double = 1e-5, _ f: (Double) -> Double) -> Double {
        (f(x + step) - f(x - step)) / (2 * step)
    }

    @Test func sampleDerivativeMatchesFiniteDifferences() {
        var checked = 0
        for logAlpha in stride(from: -4.0, through: 4.0, by: 0.5) {
            for u in [1e-6, 0.05, 0.3, 0.5, 0.7, 0.95, 1 - 1e-6] {
                let (z, analytic) = HardConcrete.sample(logAlpha: logAlpha, uniform: u)
                #expect(z >= 0 && z <= 1)
                let numeric = Self.derivative(logAlpha) { HardConcrete.sample(logAlpha: $0, uniform: u).z }
                if z == 0 || z == 1 {
                    #expect(analytic == 0, "clipped at \(z): no gradient")
                } else {
                    checked += 1
                    #expect(abs(analytic - numeric) <= 1e-6 + 1e-5 * abs(numeric), "logα \(logAlpha), u \(u)")
                }
            }
        }
        #expect(checked > 30, "most samples are inside (0, 1)")
    }

    @Test func probabilityOfNonZeroMatchesSamplingAndItsDerivative() {
        var generator = SeededGenerator(seed: 5)
        for logAlpha in [-2.0, 0.0, 1.5] {
            let p = HardConcrete.probabilityNonZero(logAlpha: logAlpha)
            let draws = 20_000
            let nonZero = (0..<draws).filter { _ in
                HardConcrete.sample(logAlpha: logAlpha, uniform: HardConcrete.uniform(&generator)).z != 0
            }.count
            #expect(abs(Double(nonZero) / Double(draws) - p) < 0.015, "logα \(logAlpha): P \(p)")
            let numeric = Self.derivative(logAlpha, HardConcrete.probabilityNonZero(logAlpha:))
            #expect(abs(HardConcrete.probabilityNonZeroDerivative(logAlpha: logAlpha) - numeric) < 1e-8)
        }
        // The closed form: sigmoid(log α − β·log(−l/r)).
        let expected = 1 / (1 + exp(-(0.3 - 2.0 / 3.0 * log(0.1 / 1.1))))
        #expect(abs(HardConcrete.probabilityNonZero(logAlpha: 0.3) - expected) < 1e-15)
    }

    @Test func clampAndEvaluationScore() {
        #expect(HardConcrete.clamp(10) == log(100.0))
        #expect(HardConcrete.clamp(-10) == log(0.01))
        #expect(HardConcrete.clamp(0.25) == 0.25)
        #expect(abs(HardConcrete.evaluationScore(logAlpha: 1) - 1 / (1 + exp(-1.2))) < 1e-15)
    }

    /// `round(Σ(1 − P))` zeros at the lowest scores; the rest keep their score.
    @Test func deterministicGroup() {
        let logAlphas = [3.0, -3.0, 0.5, -4.0, 4.0]
        let expectedZeros = logAlphas.reduce(0.0) { $0 + 1 - HardConcrete.probabilityNonZero(logAlpha: $1) }
        #expect(Int(expectedZeros.rounded()) == 2)
        let values = HardConcrete.deterministic(logAlphas: logAlphas)
        #expect(values[1] == 0 && values[3] == 0)
        for index in [0, 2, 4] { #expect(values[index] == HardConcrete.evaluationScore(logAlpha: logAlphas[index])) }
        // A single layer mask: zero exactly when P(z ≠ 0) < 0.5.
        #expect(HardConcrete.deterministic(logAlphas: [-2])[0] == 0)
        #expect(HardConcrete.deterministic(logAlphas: [-1])[0] > 0)
        #expect(HardConcrete.deterministic(logAlphas: []).isEmpty)
    }
}
