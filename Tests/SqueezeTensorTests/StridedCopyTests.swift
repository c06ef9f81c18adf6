import Testing
@testable import SqueezeTensor

/// `contiguous()` of strided views against element-by-element indexing.
/// (Both backends read views through it, so comparing them cannot catch a bug here.)
@Suite struct StridedCopyTests {
    /// The view's elements in row-major order, read one index at a time.
    static func naive(_ t: Tensor) -> [Int32] {
        let base = t.storage.bytes.assumingMemoryBound(to: Int32.self)
        return (0..<t.count).map { linear in
            var remaining = linear
            var offset = t.offset
            for axis in stride(from: t.rank - 1, through: 0, by: -1) {
                offset += remaining % t.shape[axis] * t.strides[axis]
                remaining /= t.shape[axis]
            }
            return base[offset]
        }
    }

    @Test func viewsOfEveryKindCopyInOrder() {
        let shape = [3, 1, 4, 5]
        let source = Tensor(shape: shape, int32s: (0..<60).map { Int32($0) })
        var views: [Tensor] = []
        for first in 0..<4 {
            for second in 0..<4 where second != first {
                let swapped = source.transposed(first, second)
                views.append(swapped)
                views.append(swapped.sliced(axis: 3, 0..<Swift.max(1, swapped.shape[3] - 1)))
                views.append(source.sliced(axis: 2, 1..<4).transposed(first, second))
            }
        }
        views.append(source.sliced(axis: 0, 2..<3))
        views.append(source.transposed(0, 3).transposed(1, 2).sliced(axis: 0, 0..<0))
        for view in views {
            #expect(view.contiguous().int32s == Self.naive(view), "view \(view.shape) strides \(view.strides) offset \(view.offset)")
        }
    }

    @Test func otherElementSizesCopyBytesExactly() {
        for dtype in [DType.u8, .bf16, .i64] {
            let t = Tensor(zeros: [4, 6], dtype: dtype)
            let size = dtype.byteSize
            let bytes = t.storage.bytes.assumingMemoryBound(to: UInt8.self)
            for i in 0..<(24 * size) { bytes[i] = UInt8(i % 251) }
            let view = t.transposed(0, 1).sliced(axis: 1, 1..<3)
            let packed = view.contiguous()
            let packedBytes = packed.storage.bytes.assumingMemoryBound(to: UInt8.self)
            var index = 0
            for row in 0..<6 {
                for column in 1..<3 {
                    let element = column * 6 + row
                    for byte in 0..<size {
                        #expect(packedBytes[index * size + byte] == bytes[element * size + byte], "\(dtype)")
                    }
                    index += 1
                }
            }
        }
    }
}
