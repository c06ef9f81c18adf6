/// Gathers a strided view into row-major order.
///
/// Axes of size 1 are dropped and neighbouring axes that are contiguous with
/// each other are merged, so the common cases (a transposed matrix, heads
/// split out of a hidden axis) become one outer loop around a typed inner loop.
enum StridedCopy {
    static func copy(
        from source: UnsafeMutableRawPointer, offset: Int, shape: [Int], strides: [Int], elementSize: Int,
        to destination: UnsafeMutableRawPointer
    ) {
        let total = shape.reduce(1, *)
        if total == 0 { return }
        var sizes: [Int] = []
        var steps: [Int] = []
        for axis in shape.indices where shape[axis] != 1 {
            if let lastSize = sizes.last, let lastStep = steps.last, lastStep == strides[axis] * shape[axis] {
                sizes[sizes.count - 1] = lastSize * shape[axis]
                steps[steps.count - 1] = strides[axis]
            } else {
                sizes.append(shape[axis])
                steps.append(strides[axis])
            }
        }
        if sizes.isEmpty {
            sizes = [1]
            steps = [1]
        }
        switch elementSize {
        case 4: run(UInt32.self, source, offset, sizes, steps, destination)
        case 2: run(UInt16.self, source, offset, sizes, steps, destination)
        case 8: run(UInt64.self, source, offset, sizes, steps, destination)
        default: run(UInt8.self, source, offset, sizes, steps, destination)
        }
    }

    private static func run<T>(
        _ type: T.Type, _ source: UnsafeMutableRawPointer, _ offset: Int, _ sizes: [Int], _ steps: [Int],
        _ destination: UnsafeMutableRawPointer
    ) {
        let from = source.assumingMemoryBound(to: T.self) + offset
        var to = destination.assumingMemoryBound(to: T.self)
        let inner = sizes[sizes.count - 1]
        let innerStep = steps[steps.count - 1]
        let outerRank = sizes.count - 1
        let outerCount = sizes.dropLast().reduce(1, *)
        var index = [Int](repeating: 0, count: Swift.max(outerRank, 1))
        var base = 0
        for _ in 0..<outerCount {
            let row = from + base
            if innerStep == 1 {
                to.update(from: row, count: inner)
            } else {
                for j in 0..<inner { to[j] = row[j * innerStep] }
            }
            to += inner
            var axis = outerRank - 1
            while axis >= 0 {
                index[axis] += 1
                base += steps[axis]
                if index[axis] < sizes[axis] { break }
                base -= steps[axis] * sizes[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}
