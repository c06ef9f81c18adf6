import Foundation
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct ObserverTests {
    static let kinds: [ObserverKind] = [.minMax, .percentile(99.9), .mse, .entropy]

    @Test func minMaxIsExactOnUniformData() throws {
        let values = uniformValues(10_000, in: -2..<3, seed: 7)
        let observer = observed(MinMaxObserver(), values, batchSize: 999)
        #expect(try observer.range() == (values.min() ?? 0)...(values.max() ?? 0))
        #expect(observer.observedCount == 10_000)
    }

    @Test func percentileIsNearTheTheoreticalQuantileOfUniformData() throws {
        let values = uniformValues(200_000, in: -1..<1, seed: 8)
        for p in [99.0, 99.99] {
            let observer = observed(try PercentileObserver(percentile: p), values, batchSize: 50_000)
            let range = try observer.range()
            let expected = Float(p / 100) * 2 - 1
            // One bin width plus five standard deviations of the sample quantile.
            let sampling = Float((p / 100 * (1 - p / 100) / 200_000).squareRoot() / 0.5)
            let tolerance = 2 / Float(2047) + 5 * sampling
            #expect(abs(range.upperBound - expected) <= tolerance, "p = \(p): \(range)")
            #expect(abs(range.lowerBound + expected) <= tolerance, "p = \(p): \(range)")
        }
        let all = observed(try PercentileObserver(percentile: 100), values, batchSize: 50_000)
        #expect(try all.range() == (values.min() ?? 0)...(values.max() ?? 0))
    }

    @Test func outliersAreClippedByEveryObserverButMinMax() throws {
        let values = gaussianWithOutliers
        let minMax = try observed(MinMaxObserver(), values, batchSize: 65_536).range()
        #expect(minMax == -50...50)
        let percentile = try observed(try PercentileObserver(), values, batchSize: 65_536).range()
        let entropy = try observed(try EntropyObserver(scheme: .int8Symmetric), values, batchSize: 65_536).range()
        let mse4 = try observed(try MSEObserver(scheme: .int4Symmetric), values, batchSize: 65_536).range()
        let mse4Asymmetric = try observed(try MSEObserver(scheme: .uint4Asymmetric, bins: 512), values, batchSize: 65_536).range()
        for (name, range) in [("percentile", percentile), ("entropy", entropy), ("mse int4", mse4), ("mse uint4", mse4Asymmetric)] {
            #expect(range.upperBound > 2 && range.upperBound < 8, "\(name): \(range)")
            #expect(range.lowerBound < -2 && range.lowerBound > -8, "\(name): \(range)")
        }
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric, .int4Symmetric])
    func mseRangeHasLowerErrorThanMinMaxWhenActuallyQuantized(scheme: QuantizationScheme) throws {
        let values = gaussianWithOutliers
        let mse = observed(try MSEObserver(scheme: scheme, bins: 512), values, batchSize: 65_536)
        let minMax = observed(MinMaxObserver(), values, batchSize: 65_536)
        let mseError = squaredQuantizationError(values, try mse.quantizer(for: scheme))
        let minMaxError = squaredQuantizationError(values, try minMax.quantizer(for: scheme))
        #expect(mseError < 0.9 * minMaxError, "\(scheme): mse \(mse) → \(mseError), minmax → \(minMaxError)")
        // With 127 levels the six outliers cost more to clip than to keep: the MSE
        // range stays wide for int8, but still inside the outliers.
        let range = try mse.range()
        #expect(range.upperBound < 50 && range.lowerBound > -50)
    }

    @Test func rangesGrowAcrossBatches() throws {
        let batches: [[Float]] = [uniformValues(2000, in: 0..<1, seed: 9), uniformValues(2000, in: -5..<5, seed: 10), [100]]
        for kind in Self.kinds {
            var observer = try kind.makeObserver(scheme: .int8Symmetric, bins: 256)
            for batch in batches { observer.observe(batch) }
            let range = try observer.range()
            let all = batches.flatMap { $0 }
            #expect(observer.observedCount == all.count)
            #expect(range.lowerBound >= (all.min() ?? 0) && range.upperBound <= 100, "\(kind): \(range)")
            #expect(range.lowerBound < -4.5 && range.upperBound > 4.5, "\(kind): \(range) lost the second batch")
        }
        var minMax = MinMaxObserver()
        for batch in batches { minMax.observe(batch) }
        #expect(try minMax.range().upperBound == 100)
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric])
    func histogramObserversDoNotDependOnBatchOrder(scheme: QuantizationScheme) throws {
        let values = normalValues(20_000, seed: 12) + [30, -25]
        let shuffled = Array(values.reversed())
        for kind in Self.kinds {
            let reference = try observed(try kind.makeObserver(scheme: scheme, bins: 256), values, batchSize: 20_002).range()
            let small = try observed(try kind.makeObserver(scheme: scheme, bins: 256), values, batchSize: 777).range()
            let reversed = try observed(try kind.makeObserver(scheme: scheme, bins: 256), shuffled, batchSize: 1234).range()
            #expect(small == reference, "\(kind)")
            #expect(reversed == reference, "\(kind)")
        }
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric, .int4Symmetric])
    func emptyObserversReportNoData(scheme: QuantizationScheme) throws {
        for kind in Self.kinds {
            var observer = try kind.makeObserver(scheme: scheme, bins: 256)
            #expect(throws: QuantizationError.noData) { try observer.range() }
            #expect(throws: QuantizationError.noData) { try observer.quantizer(for: scheme) }
            observer.observe([Float.nan, .infinity])
            observer.observe([Float]())
            #expect(throws: QuantizationError.noData) { try observer.range() }
            #expect(observer.nonFiniteCount == 2)
            #expect(observer.observedCount == 0)
        }
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric, .int4Symmetric])
    func degenerateDataGivesFiniteQuantizers(scheme: QuantizationScheme) throws {
        for kind in Self.kinds {
            let zeros = observed(try kind.makeObserver(scheme: scheme, bins: 256), [0, 0, -0.0, .nan], batchSize: 4)
            #expect(try zeros.range() == 0...0, "\(kind)")
            #expect(try zeros.quantizer(for: scheme).scale == 1)
            let constant = observed(try kind.makeObserver(scheme: scheme, bins: 256), [Float](repeating: 3, count: 100), batchSize: 7)
            #expect(try constant.range() == 3...3, "\(kind)")
            let quantizer = try constant.quantizer(for: scheme)
            #expect(abs(quantizer.fakeQuantize(3) - 3) <= quantizer.scale / 2)
            let withInfinity = observed(try kind.makeObserver(scheme: scheme, bins: 256), [1, -2, .infinity, -.infinity], batchSize: 4)
            #expect(try withInfinity.quantizer(for: scheme).scale.isFinite, "\(kind)")
            #expect(withInfinity.nonFiniteCount == 2)
        }
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .int4Symmetric])
    func symmetricRangesOfOneSidedDataAreValid(scheme: QuantizationScheme) throws {
        let positive = uniformValues(5000, in: 2..<5, seed: 15) + [40]
        let negative = positive.map { -$0 }
        for kind in Self.kinds {
            for values in [positive, negative] {
                let range = try observed(try kind.makeObserver(scheme: scheme, bins: 256), values, batchSize: 1000).range()
                #expect(range.lowerBound >= (values.min() ?? 0) && range.upperBound <= (values.max() ?? 0), "\(kind): \(range)")
                // Entropy calibration may collapse one-sided data onto a bin (see EntropyObserver).
                if kind != .entropy { #expect(range.upperBound - range.lowerBound > 2, "\(kind): \(range) clips the bulk of the data") }
            }
        }
    }

    @Test func invalidSettingsAreErrors() {
        #expect(throws: QuantizationError.invalidPercentile(50)) { try PercentileObserver(percentile: 50) }
        #expect(throws: QuantizationError.invalidPercentile(100.5)) { try ObserverKind.percentile(100.5).makeObserver(scheme: .int8Symmetric) }
        #expect(throws: QuantizationError.self) { try PercentileObserver(percentile: .nan) }
        #expect(throws: QuantizationError.invalidBinCount(8, minimum: 16)) { try MSEObserver(bins: 8) }
        #expect(throws: QuantizationError.invalidBinCount(200, minimum: 256)) { try EntropyObserver(scheme: .uint8Asymmetric, bins: 200) }
        #expect(throws: QuantizationError.self) { try PercentileObserver(bins: 1 << 21) }
    }

    @Test func observesTensors() throws {
        var observer = MinMaxObserver()
        observer.observe(Tensor(shape: [2, 2], floats: [1, -4, 2, 3]).transposed(0, 1))
        #expect(try observer.range() == -4...3)
    }
}

/// The fast histogram scores against direct implementations of their definitions.
@Suite struct CalibrationScoreTests {
    private func histogram(_ values: [Float], bins: Int, absolute: Bool) -> CalibrationHistogram {
        var histogram = CalibrationHistogram(bins: bins, absolute: absolute)
        values.withUnsafeBufferPointer { histogram.add($0) }
        return histogram
    }

    /// `∫ ρ (x − x̂)²` bin by bin, splitting each bin at the quantizer's cell
    /// boundaries and integrating `(x − v)²` on each piece in closed form.
    private func directSquaredError(_ h: CalibrationHistogram, _ quantizer: AffineQuantizer) -> Double {
        let s = Double(quantizer.scale)
        let z = Double(quantizer.zeroPoint)
        let (qMin, qMax) = (Double(quantizer.codeRange.lowerBound), Double(quantizer.codeRange.upperBound))
        var total = 0.0
        for bin in 0..<h.usedBinCount where h.counts[bin] > 0 {
            let (left, right) = (h.edge(bin), h.edge(bin + 1))
            let density = Double(h.counts[bin]) / (right - left)
            var a = left
            while a < right {
                // Round half up: at a cell boundary, `a` starts the next cell.
                let code = Swift.min(Swift.max((a / s + 0.5).rounded(.down) + z, qMin), qMax)
                let end = code == qMax ? right : Swift.min(right, s * (code - z + 0.5))
                let v = s * (code - z)
                total += density * (pow(end - v, 3) - pow(a - v, 3)) / 3
                a = end
            }
        }
        return total
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric, .int4Symmetric, .uint4Asymmetric])
    func squaredErrorMatchesTheDirectIntegral(scheme: QuantizationScheme) throws {
        let values = normalValues(3000, seed: 13).map { $0 + 0.7 } + [9]
        let h = histogram(values, bins: 64, absolute: false)
        let density = HistogramDensity(h)
        for (low, high) in [(Float(-3), Float(4)), (-0.5, 1), (0, 9), (-0.01, 0.02)] {
            let quantizer = try scheme.quantizer(min: low, max: high)
            let expected = directSquaredError(h, quantizer)
            let actual = density.squaredError(quantizer)
            #expect(abs(actual - expected) <= 1e-7 * expected, "[\(low), \(high)]: \(actual) vs \(expected)")
        }
    }

    /// KL(P ‖ Q) as TensorRT's pseudocode states it.
    private func referenceDivergence(_ counts: [Int], start: Int, end: Int, levels: Int) -> Double {
        let width = end - start
        var p = counts[start..<end].map(Double.init)
        p[0] += Double(counts[0..<start].reduce(0, +))
        p[width - 1] += Double(counts[end...].reduce(0, +))
        var q = [Double](repeating: 0, count: width)
        for group in 0..<levels {
            let members = (0..<width).filter { $0 * levels / width == group }
            let mass = members.reduce(0.0) { $0 + Double(counts[start + $1]) }
            let nonzero = members.filter { counts[start + $0] > 0 }
            for k in nonzero { q[k] = mass / Double(nonzero.count) }
        }
        let pSum = p.reduce(0, +)
        let qSum = q.reduce(0, +)
        var divergence = 0.0
        for k in 0..<width where p[k] > 0 {
            if q[k] == 0 { return .infinity }
            divergence += p[k] / pSum * log((p[k] / pSum) / (q[k] / qSum))
        }
        return divergence
    }

    @Test func divergenceMatchesTheDirectDefinition() {
        var generator = SeededGenerator(seed: 14)
        let values = (0..<5000).map { _ in abs(generator.normal()) * (generator.uniform() < 0.1 ? 4 : 1) }
        let h = histogram(values + [0, 30], bins: 128, absolute: true)
        let counts = Array(h.counts[0..<h.usedBinCount])
        for levels in [8, 16] {
            let divergence = HistogramDivergence(h, levels: levels)
            for (start, end) in [(0, levels), (0, 37), (0, 64), (0, counts.count), (3, 40), (5, 5 + levels), (10, counts.count)] {
                let expected = referenceDivergence(counts, start: start, end: end, levels: levels)
                let actual = divergence.score(start: start, end: end)
                if expected.isInfinite {
                    #expect(actual.isInfinite, "[\(start), \(end)) levels \(levels)")
                } else {
                    #expect(abs(actual - expected) <= 1e-9 + 1e-9 * expected, "[\(start), \(end)) levels \(levels): \(actual) vs \(expected)")
                }
            }
        }
    }
}
