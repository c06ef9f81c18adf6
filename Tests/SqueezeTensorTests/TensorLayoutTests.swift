import Testing
@testable import SqueezeTensor

@Suite struct TensorLayoutTests {
    @Test func transposeIsAViewAndContiguousCopiesInOrder() {
        let t = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let tt = t.transposed(0, 1)
        #expect(tt.shape == [3, 2])
        #expect(!tt.isContiguous)
        #expect(tt.contiguous().floats == [1, 4, 2, 5, 3, 6])
    }

    @Test func sliceAndReshape() {
        let t = Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6])
        let middle = t.sliced(axis: 0, 1..<3)
        #expect(middle.isContiguous)
        #expect(middle.floats == [3, 4, 5, 6])
        #expect(middle.reshaped([-1]).shape == [4])
        let column = t.sliced(axis: 1, 1..<2)
        #expect(column.floats == [2, 4, 6])
    }

    @Test func writesCopyWhenShared() {
        let a = Tensor(shape: [2], floats: [1, 2])
        var b = a
        b.withUnsafeMutableFloats { $0[0] = 9 }
        #expect(a.floats == [1, 2])
        #expect(b.floats == [9, 2])
    }
}
