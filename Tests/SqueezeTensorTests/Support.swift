import Testing
@testable import SqueezeTensor

/// Largest violation of `|x − y| <= absolute + relative · |y|`, as a multiple
/// of the allowance (≤ 1 passes); and where it happened.
func worstViolation(_ actual: [Float], _ expected: [Float], absolute: Float, relative: Float) -> (ratio: Float, index: Int) {
    var worst: Float = 0
    var at = -1
    for i in expected.indices {
        let allowance = absolute + relative * abs(expected[i])
        let difference = abs(actual[i] - expected[i])
        let ratio = difference.isNaN ? .infinity : difference / allowance
        if ratio > worst {
            worst = ratio
            at = i
        }
    }
    return (worst, at)
}

/// Expects equal shapes and element-wise closeness (scale-aware absolute tolerance).
func expectClose(
    _ actual: Tensor, _ expected: Tensor, relative: Float = 1e-5, absolute: Float? = nil,
    _ what: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.shape == expected.shape, "\(what()): shape \(actual.shape) vs \(expected.shape)", sourceLocation: sourceLocation)
    #expect(actual.dtype == expected.dtype, "\(what()): dtype", sourceLocation: sourceLocation)
    guard actual.shape == expected.shape, actual.dtype == .f32, expected.dtype == .f32 else { return }
    let a = actual.floats
    let e = expected.floats
    let scale = e.reduce(Float(0)) { Swift.max($0, abs($1)) }
    let (ratio, index) = worstViolation(a, e, absolute: absolute ?? relative * Swift.max(scale, 1e-3), relative: relative)
    #expect(
        ratio <= 1, "\(what()): element \(index) is \(index >= 0 ? a[index] : 0), expected \(index >= 0 ? e[index] : 0) (\(ratio)× tolerance)",
        sourceLocation: sourceLocation)
}

/// Bit patterns, for exact comparisons that treat NaN and −0 honestly.
func bits(_ t: Tensor) -> [UInt32] { t.floats.map(\.bitPattern) }

/// How a test input is laid out in memory.
enum Layout: CaseIterable, Sendable {
    case contiguous
    /// A transposed view (last two axes), so not row-major.
    case transposed
    /// A slice along the last axis of a wider tensor, so rows have gaps.
    case sliced
}

/// A uniform random f32 tensor of `shape` in `range`, laid out as `layout`.
func randomTensor(
    _ shape: [Int], _ layout: Layout = .contiguous, in range: Range<Float> = -1..<1, _ generator: inout SeededGenerator
) -> Tensor {
    switch layout {
    case .contiguous:
        return Tensor.uniform(shape: shape, in: range, generator: &generator)
    case .transposed:
        guard shape.count >= 2 else { return randomTensor(shape, .sliced, in: range, &generator) }
        var stored = shape
        stored.swapAt(shape.count - 2, shape.count - 1)
        return Tensor.uniform(shape: stored, in: range, generator: &generator).transposed(shape.count - 2, shape.count - 1)
    case .sliced:
        guard let last = shape.last else { return Tensor.uniform(shape: shape, in: range, generator: &generator) }
        var wide = shape
        wide[shape.count - 1] = last + 3
        return Tensor.uniform(shape: wide, in: range, generator: &generator).sliced(axis: shape.count - 1, 1..<1 + last)
    }
}

/// i32 ids in `0..<upper`.
func randomIDs(_ shape: [Int], upper: Int, _ generator: inout SeededGenerator) -> Tensor {
    Tensor(shape: shape, int32s: (0..<shape.reduce(1, *)).map { _ in Int32(generator.next() % UInt64(upper)) })
}
