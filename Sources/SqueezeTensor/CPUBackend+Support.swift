import CKernels

/// A fresh contiguous f32 tensor of `shape` whose elements `body` writes (all of them).
func produce(_ shape: [Int], _ body: (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
    let storage = TensorStorage(uninitializedByteCount: shape.reduce(1, *) * 4)
    body(storage.bytes.assumingMemoryBound(to: Float.self))
    return Tensor(storage: storage, dtype: .f32, shape: shape)
}

/// The tensor's f32 elements in row-major order (copied first when it is a strided view).
func withFloats<R>(_ tensor: Tensor, _ body: (UnsafePointer<Float>) -> R) -> R {
    let packed = tensor.contiguous()
    return withExtendedLifetime(packed) {
        body(UnsafePointer(packed.storage.bytes.assumingMemoryBound(to: Float.self) + packed.offset))
    }
}

extension CPUBackend {
    /// One input, one output, element by element, in fixed chunks.
    func map(
        _ x: Tensor, _ op: String, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
    ) -> Tensor {
        x.requireFloat(op)
        return withFloats(x) { px in
            produce(x.shape) { po in
                runner.forEachRange(count: x.count, chunkSize: elementChunk) { r in
                    kernel(px + r.lowerBound, po + r.lowerBound, r.count)
                }
            }
        }
    }

    /// Two same-shape inputs, element by element, in fixed chunks.
    func paired(
        _ x: Tensor, _ y: Tensor, _ op: String,
        _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
    ) -> Tensor {
        x.requireFloat(op)
        y.requireFloat(op)
        precondition(x.shape == y.shape, "\(op): shapes \(x.shape) and \(y.shape) differ")
        return withFloats(x) { px in
            withFloats(y) { py in
                produce(x.shape) { po in
                    runner.forEachRange(count: x.count, chunkSize: elementChunk) { r in
                        kernel(px + r.lowerBound, py + r.lowerBound, po + r.lowerBound, r.count)
                    }
                }
            }
        }
    }

    /// A last-axis op: kernel(input, output, rows, columns) on chunks of rows.
    func rowwise(
        _ x: Tensor, _ op: String, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
    ) -> Tensor {
        x.requireFloat(op)
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        return withFloats(x) { px in
            produce(x.shape) { po in
                runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                    let start = r.lowerBound * columns
                    kernel(px + start, po + start, r.count, columns)
                }
            }
        }
    }

    /// A last-axis op of two same-shape inputs.
    func rowwisePaired(
        _ x: Tensor, _ y: Tensor, _ op: String,
        _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
    ) -> Tensor {
        x.requireFloat(op)
        y.requireFloat(op)
        precondition(x.shape == y.shape, "\(op): shapes \(x.shape) and \(y.shape) differ")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        return withFloats(x) { px in
            withFloats(y) { py in
                produce(x.shape) { po in
                    runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                        let start = r.lowerBound * columns
                        kernel(px + start, py + start, po + start, r.count, columns)
                    }
                }
            }
        }
    }

    func binary(_ a: Tensor, _ b: Tensor, op: Int32, _ name: String) -> Tensor {
        a.requireFloat(name)
        b.requireFloat(name)
        return broadcastBinary(a, b, shape: Shapes.broadcast(a.shape, b.shape), op: op, fill: 0)
    }

    /// `sq_binary` over the broadcast of `a` and `b` to `shape`.
    ///
    /// Axes of size 1 are dropped and neighbouring axes that step alike in both
    /// inputs are merged, leaving an outer loop around one contiguous (or
    /// repeated) inner run per input.
    func broadcastBinary(_ a: Tensor, _ b: Tensor, shape: [Int], op: Int32, fill: Float) -> Tensor {
        let aStrides = Shapes.broadcastStrides(a.shape, to: shape)
        let bStrides = Shapes.broadcastStrides(b.shape, to: shape)
        var sizes: [Int] = []
        var stepsA: [Int] = []
        var stepsB: [Int] = []
        for axis in shape.indices where shape[axis] != 1 {
            let last = sizes.count - 1
            if last >= 0 && stepsA[last] == aStrides[axis] * shape[axis] && stepsB[last] == bStrides[axis] * shape[axis] {
                sizes[last] *= shape[axis]
                stepsA[last] = aStrides[axis]
                stepsB[last] = bStrides[axis]
            } else {
                sizes.append(shape[axis])
                stepsA.append(aStrides[axis])
                stepsB.append(bStrides[axis])
            }
        }
        let inner = sizes.last ?? 1
        let innerA = stepsA.last ?? 0
        let innerB = stepsB.last ?? 0
        let outerSizes = Array(sizes.dropLast())
        let outerA = Array(stepsA.dropLast())
        let outerB = Array(stepsB.dropLast())
        let outerCount = outerSizes.reduce(1, *)
        return withFloats(a) { pa in
            withFloats(b) { pb in
                produce(shape) { po in
                    if outerCount == 1 {
                        runner.forEachRange(count: inner, chunkSize: elementChunk) { r in
                            let s = r.lowerBound
                            sq_binary(op, pa + s * innerA, innerA, pb + s * innerB, innerB, po + s, r.count, fill)
                        }
                        return
                    }
                    let perChunk = Swift.max(1, elementChunk / Swift.max(inner, 1))
                    runner.forEachRange(count: outerCount, chunkSize: perChunk) { r in
                        var index = [Int](repeating: 0, count: outerSizes.count)
                        var remaining = r.lowerBound
                        var offsetA = 0
                        var offsetB = 0
                        for axis in stride(from: outerSizes.count - 1, through: 0, by: -1) {
                            index[axis] = remaining % outerSizes[axis]
                            remaining /= outerSizes[axis]
                            offsetA += index[axis] * outerA[axis]
                            offsetB += index[axis] * outerB[axis]
                        }
                        for outer in r {
                            sq_binary(op, pa + offsetA, innerA, pb + offsetB, innerB, po + outer * inner, inner, fill)
                            var axis = outerSizes.count - 1
                            while axis >= 0 {
                                index[axis] += 1
                                offsetA += outerA[axis]
                                offsetB += outerB[axis]
                                if index[axis] < outerSizes[axis] { break }
                                offsetA -= outerA[axis] * outerSizes[axis]
                                offsetB -= outerB[axis] * outerSizes[axis]
                                index[axis] = 0
                                axis -= 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sums a contiguous `x` over `axes` (sorted, non-negative), keeping them as size 1.
    /// Each run of neighbouring reduced axes is one `[outer, reduced, inner]` pass.
    func sumKeepingAxes(_ x: Tensor, axes: [Int]) -> Tensor {
        var current = x
        var position = 0
        while position < axes.count {
            var end = position
            while end + 1 < axes.count && axes[end + 1] == axes[end] + 1 { end += 1 }
            let first = axes[position]
            let last = axes[end]
            current = sumRun(current, first: first, last: last)
            position = end + 1
        }
        return current
    }

    private func sumRun(_ x: Tensor, first: Int, last: Int) -> Tensor {
        let outer = x.shape[..<first].reduce(1, *)
        let reduced = x.shape[first...last].reduce(1, *)
        let inner = x.shape[(last + 1)...].reduce(1, *)
        var shape = x.shape
        for axis in first...last { shape[axis] = 1 }
        return withFloats(x) { px in
            produce(shape) { po in
                if inner == 1 {
                    runner.forEachRange(count: outer, chunkSize: rowChunk(columns: reduced)) { r in
                        sq_sum_rows(px + r.lowerBound * reduced, po + r.lowerBound, r.count, reduced)
                    }
                    return
                }
                // Narrow column blocks, so a bias gradient (one long run of
                // rows, a few hundred columns) still splits across threads.
                let block = Swift.min(Int(SQ_COLUMN_BLOCK), 64)
                let blocks = (inner + block - 1) / block
                runner.run(chunks: outer * blocks) { task in
                    let o = task / blocks
                    let column = task % blocks * block
                    sq_sum_columns(
                        px + o * reduced * inner + column, po + o * inner + column, reduced,
                        Swift.min(block, inner - column), inner)
                }
            }
        }
    }
}

/// One side of a matrix product as BLAS sees it: the matrices of every batch
/// in some storage, each row-major with a leading dimension, possibly to be
/// read transposed. Strided views whose matrices are row- or column-major
/// (a transposed tensor, heads sliced out of a hidden axis) are used in place;
/// anything else is copied to contiguous first.
struct MatrixOperand {
    let tensor: Tensor
    let base: UnsafePointer<Float>
    /// Whether BLAS reads the stored matrix transposed.
    let transposed: Bool
    let leadingDimension: Int
    /// Element offset of each batch's matrix from `base`.
    let batchOffsets: [Int]

    init(_ source: Tensor, transposed requested: Bool) {
        let rank = source.rank
        let rows = source.shape[rank - 2]
        let columns = source.shape[rank - 1]
        let rowStride = source.strides[rank - 2]
        let columnStride = source.strides[rank - 1]
        var tensor = source
        var transposed = requested
        var leading: Int
        if (columns == 1 || columnStride == 1) && (rows == 1 || rowStride >= columns) {
            leading = rows == 1 ? Swift.max(columns, 1) : rowStride
        } else if (rows == 1 || rowStride == 1) && (columns == 1 || columnStride >= rows) {
            // Column-major: the stored matrix is the transpose.
            leading = columns == 1 ? Swift.max(rows, 1) : columnStride
            transposed.toggle()
        } else {
            tensor = source.contiguous()
            leading = Swift.max(columns, 1)
        }
        self.tensor = tensor
        self.transposed = transposed
        self.leadingDimension = leading
        self.base = UnsafePointer(tensor.storage.bytes.assumingMemoryBound(to: Float.self))
        let batchShape = Array(tensor.shape.dropLast(2))
        let batchStrides = Array(tensor.strides.dropLast(2))
        var offsets: [Int] = []
        offsets.reserveCapacity(batchShape.reduce(1, *))
        var index = [Int](repeating: 0, count: batchShape.count)
        for _ in 0..<batchShape.reduce(1, *) {
            var offset = tensor.offset
            for axis in batchShape.indices { offset += index[axis] * batchStrides[axis] }
            offsets.append(offset)
            var axis = batchShape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < batchShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        self.batchOffsets = offsets
    }

    /// Whether every batch's rows continue the previous batch's at the same
    /// stride, so all batches form one `[batch · rowsPerBatch, K]` matrix.
    func rowsAreUniform(rowsPerBatch: Int) -> Bool {
        guard let first = batchOffsets.first else { return false }
        for (batch, offset) in batchOffsets.enumerated() where offset != first + batch * rowsPerBatch * leadingDimension {
            return false
        }
        return true
    }
}

/// The tiles of one matrix product: consecutive ranges of rows or columns.
struct ProductTiles {
    struct Tile {
        let alongRows: Bool
        let range: Range<Int>
    }

    let alongRows: Bool
    let length: Int
    let size: Int

    var count: Int { Swift.max(1, (length + size - 1) / size) }

    func range(_ index: Int) -> Tile {
        Tile(alongRows: alongRows, range: index * size..<Swift.min(length, (index + 1) * size))
    }
}
