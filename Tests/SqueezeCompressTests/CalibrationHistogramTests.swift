import Foundation
import Testing
@testable import SqueezeCompress

@Suite struct CalibrationHistogramTests {
    private func histogram(_ batches: [[Float]], bins: Int = 64, absolute: Bool = false) -> CalibrationHistogram {
        var histogram = CalibrationHistogram(bins: bins, absolute: absolute)
        for batch in batches { batch.withUnsafeBufferPointer { histogram.add($0) } }
        return histogram
    }

    /// The counts a one-shot histogram of `values` on the same grid would have.
    private func bruteForceCounts(_ values: [Float], like histogram: CalibrationHistogram) -> [Int] {
        var counts = [Int](repeating: 0, count: histogram.capacity)
        for value in values where value.isFinite {
            let x = histogram.isAbsolute ? abs(value) : value
            let index = Int((Double(x) / histogram.binWidth).rounded(.down)) - histogram.firstIndex
            counts[index] += 1
        }
        return counts
    }

    @Test func growingRangeMergesBinsExactly() {
        let small = uniformValues(500, in: 0..<1, seed: 1)
        let wide = uniformValues(500, in: -10..<10, seed: 2)
        let huge = uniformValues(50, in: 100..<1000, seed: 3)
        let grown = histogram([small, wide, huge])
        #expect(grown.total == 1050)
        #expect(grown.counts == bruteForceCounts(small + wide + huge, like: grown))
        #expect(grown.extrema.minimum == (small + wide + huge).min())
        #expect(grown.extrema.maximum == (small + wide + huge).max())
    }

    @Test func batchOrderAndSplitDoNotMatter() {
        let values = normalValues(3000, seed: 4).map { $0 * 3 } + [120, -0.001, 7e-3]
        let oneShot = histogram([values])
        let inBatches = histogram(stride(from: 0, to: values.count, by: 97).map { Array(values[$0..<min($0 + 97, values.count)]) })
        let reversed = histogram([Array(values.reversed())])
        let outlierFirst = histogram([[120], Array(values.dropLast(3)), [-0.001, 7e-3]])
        #expect(inBatches == oneShot)
        #expect(reversed == oneShot)
        #expect(outlierFirst == oneShot)
    }

    @Test func resolutionIsAtLeastTheRequestedBins() {
        for (low, high) in [(Float(-1), Float(1)), (0.001, 0.002), (-3e5, 17), (1000, 1000.5)] {
            let data = uniformValues(200, in: low..<high, seed: 5) + [low, high]
            let h = histogram([data], bins: 64)
            #expect(h.binWidth <= Double(high - low) / 63, "[\(low), \(high)]: width \(h.binWidth)")
            #expect(h.usedBinCount <= h.capacity)
        }
    }

    @Test func absoluteModeBinsMagnitudesFromZero() {
        let h = histogram([[-3, 1, 2.5, -0.25]], absolute: true)
        #expect(h.firstIndex == 0)
        #expect(h.lowerBound == 0 && h.upperBound == 3)
        #expect(h.extrema.minimum == -3)
        #expect(h.counts == bruteForceCounts([-3, 1, 2.5, -0.25], like: h))
    }

    @Test func nonFiniteValuesAreCountedNotBinned() {
        let h = histogram([[.nan, 1, .infinity], [-.infinity, 2]])
        #expect(h.total == 2)
        #expect(h.extrema.nonFiniteCount == 3)
        #expect(h.counts.reduce(0, +) == 2)
        let onlyNaN = histogram([[.nan, .nan]])
        #expect(onlyNaN.total == 0)
        #expect(onlyNaN.extrema.nonFiniteCount == 2)
    }

    @Test func degenerateData() {
        let zeros = histogram([[0, 0, -0.0]])
        #expect(zeros.total == 3)
        #expect(zeros.usedBinCount == 1)
        #expect(zeros.quantile(0.5) == 0)
        let constant = histogram([[5e30, 5e30]])
        #expect(constant.usedBinCount == 1)
        #expect(constant.quantile(0.9) == 5e30)
        let extremes = histogram([[-.greatestFiniteMagnitude, .greatestFiniteMagnitude, 0]])
        #expect(extremes.total == 3)
        #expect(extremes.binWidth.isFinite)
    }

    @Test func quantileInterpolatesInsideABin() {
        // 1000 values evenly spread over [0, 1): the q-quantile is about q.
        let values = (0..<1000).map { Float($0) / 1000 }
        let h = histogram([values], bins: 128)
        for q in [0.1, 0.25, 0.5, 0.9, 0.999] {
            #expect(abs(Double(h.quantile(q)) - q) <= h.binWidth, "q = \(q): \(h.quantile(q))")
        }
        #expect(h.quantile(0) == 0)
        #expect(h.quantile(1) == 0.999)
    }
}
