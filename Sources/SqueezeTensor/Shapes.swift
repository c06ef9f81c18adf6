/// Shape arithmetic shared by the backends: broadcasting, axis normalisation,
/// reduction bookkeeping. Violations are programming errors (preconditions);
/// user-facing code validates shapes before it builds tensors.
enum Shapes {
    /// The NumPy broadcast of two shapes (aligned from the right).
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = Swift.max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for axis in 0..<rank {
            let x = axis < rank - a.count ? 1 : a[axis - (rank - a.count)]
            let y = axis < rank - b.count ? 1 : b[axis - (rank - b.count)]
            precondition(x == y || x == 1 || y == 1, "shapes \(a) and \(b) do not broadcast")
            result[axis] = x == 1 ? y : x
        }
        return result
    }

    /// Element strides for reading a contiguous tensor of `shape` as if it had
    /// shape `target` (which `shape` broadcasts to): 0 on repeated axes.
    static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        precondition(shape.count <= target.count, "shape \(shape) does not broadcast to \(target)")
        let own = Tensor.contiguousStrides(for: shape)
        let lead = target.count - shape.count
        var result = [Int](repeating: 0, count: target.count)
        for axis in 0..<shape.count {
            precondition(
                shape[axis] == target[axis + lead] || shape[axis] == 1,
                "shape \(shape) does not broadcast to \(target)")
            result[axis + lead] = shape[axis] == 1 ? 0 : own[axis]
        }
        return result
    }

    /// `axis` counted from the end when negative.
    static func normalize(axis: Int, rank: Int) -> Int {
        let resolved = axis < 0 ? axis + rank : axis
        precondition(resolved >= 0 && resolved < rank, "axis \(axis) out of range for rank \(rank)")
        return resolved
    }

    /// Sorted, de-duplicated, non-negative axes.
    static func normalize(axes: [Int], rank: Int) -> [Int] {
        let resolved = axes.map { normalize(axis: $0, rank: rank) }
        let unique = Array(Set(resolved)).sorted()
        precondition(unique.count == resolved.count, "repeated axis in \(axes)")
        return unique
    }

    /// The shape left after reducing `axes` (sorted, normalised).
    static func reducedShape(_ shape: [Int], axes: [Int], keepDimensions: Bool) -> [Int] {
        var result: [Int] = []
        for (axis, size) in shape.enumerated() {
            if axes.contains(axis) {
                if keepDimensions { result.append(1) }
            } else {
                result.append(size)
            }
        }
        return result
    }

    /// The axes of `gradientShape` that broadcasting expanded from `shape`
    /// (leading extra axes and axes where `shape` has 1).
    static func expandedAxes(from shape: [Int], to gradientShape: [Int]) -> [Int] {
        precondition(shape.count <= gradientShape.count, "cannot reduce \(gradientShape) to \(shape)")
        let lead = gradientShape.count - shape.count
        var axes: [Int] = Array(0..<lead)
        for axis in 0..<shape.count {
            let size = shape[axis]
            let expanded = gradientShape[axis + lead]
            precondition(size == expanded || size == 1, "cannot reduce \(gradientShape) to \(shape)")
            if size == 1 && expanded != 1 { axes.append(axis + lead) }
        }
        return axes
    }

    /// Rows (all leading axes) and the length of the last axis.
    static func rowsAndColumns(_ shape: [Int]) -> (rows: Int, columns: Int) {
        precondition(!shape.isEmpty, "a last-axis op needs rank >= 1")
        let columns = shape[shape.count - 1]
        return (shape.dropLast().reduce(1, *), columns)
    }

    /// Shapes of a matrix product (see `Backend.matmul`).
    static func matmul(
        _ a: [Int], _ b: [Int], transposeA: Bool, transposeB: Bool
    ) -> MatmulShape {
        precondition(a.count >= 2 && b.count >= 2, "matmul needs rank >= 2, got \(a) and \(b)")
        let batchShape = Array(a.dropLast(2))
        let sharedB = b.count == 2
        precondition(
            sharedB || Array(b.dropLast(2)) == batchShape,
            "matmul batch axes differ: \(a) and \(b)")
        let m = transposeA ? a[a.count - 1] : a[a.count - 2]
        let k = transposeA ? a[a.count - 2] : a[a.count - 1]
        let kb = transposeB ? b[b.count - 1] : b[b.count - 2]
        let n = transposeB ? b[b.count - 2] : b[b.count - 1]
        precondition(k == kb, "matmul inner sizes differ: \(a)\(transposeA ? "ᵀ" : "") · \(b)\(transposeB ? "ᵀ" : "")")
        return MatmulShape(
            batch: batchShape.reduce(1, *), m: m, n: n, k: k, sharedB: sharedB,
            resultShape: batchShape + [m, n])
    }
}

/// Sizes of one (batched) matrix product.
struct MatmulShape {
    var batch: Int
    var m: Int
    var n: Int
    var k: Int
    /// `b` is one rank-2 matrix used by every batch.
    var sharedB: Bool
    var resultShape: [Int]
}

extension Tensor {
    /// Precondition that the tensor holds f32 values.
    func requireFloat(_ op: String) {
        precondition(dtype == .f32, "\(op): expected f32, got \(dtype)")
    }

    /// Precondition that the tensor holds i32 values.
    func requireInt32(_ op: String) {
        precondition(dtype == .i32, "\(op): expected i32, got \(dtype)")
    }

    /// Whether each element is non-zero, for any dtype (masks).
    var nonZeroFlags: [Bool] {
        switch dtype {
        case .f32: withUnsafeElements(Float.self) { $0.map { $0 != 0 } }
        case .f16, .bf16: withUnsafeElements(UInt16.self) { $0.map { $0 & 0x7FFF != 0 } }
        case .i64: withUnsafeElements(Int64.self) { $0.map { $0 != 0 } }
        case .i32: withUnsafeElements(Int32.self) { $0.map { $0 != 0 } }
        case .i8: withUnsafeElements(Int8.self) { $0.map { $0 != 0 } }
        case .u8: withUnsafeElements(UInt8.self) { $0.map { $0 != 0 } }
        }
    }
}
