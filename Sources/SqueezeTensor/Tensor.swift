import Foundation

/// Element types a tensor can hold. Compute happens in `f32`; the others are
/// for token ids, quantised weights and storage of checkpoints.
public enum DType: String, Sendable, Hashable, Codable, CaseIterable {
    case f32, f16, bf16, i64, i32, i8, u8

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .i64: 8
        case .i8, .u8: 1
        }
    }
}

/// A reference-counted block of bytes behind one or more tensors.
///
/// Either owned (allocated 64-byte aligned, freed on deinit; large blocks are
/// recycled through `BufferPool`) or borrowed from an owner that keeps the
/// bytes alive, e.g. a memory-mapped checkpoint.
public final class TensorStorage: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: AnyObject?
    /// Size class of a pooled buffer; 0 when `bytes` came from `allocate`.
    private let pooledCapacity: Int

    /// Zero-filled storage of `byteCount` bytes.
    public convenience init(byteCount: Int) {
        self.init(uninitializedByteCount: byteCount, zeroed: true)
    }

    /// Storage whose bytes are left uninitialised, for kernels that write
    /// every element before anything reads it.
    convenience init(uninitializedByteCount byteCount: Int) {
        self.init(uninitializedByteCount: byteCount, zeroed: false)
    }

    private init(uninitializedByteCount byteCount: Int, zeroed: Bool) {
        self.byteCount = byteCount
        self.owner = nil
        if byteCount >= BufferPool.minimumBytes {
            let capacity = BufferPool.capacity(for: byteCount)
            let (pointer, fresh) = BufferPool.shared.take(capacity: capacity)
            if zeroed && !fresh { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
            self.bytes = pointer
            self.pooledCapacity = capacity
        } else {
            let count = max(byteCount, 1)
            self.bytes = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
            if zeroed { self.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: count) }
            self.pooledCapacity = 0
        }
    }

    /// Storage over bytes someone else owns; `owner` is retained until this
    /// storage dies. The bytes must not be written through a tensor.
    public init(borrowing bytes: UnsafeRawPointer, byteCount: Int, owner: AnyObject) {
        self.bytes = UnsafeMutableRawPointer(mutating: bytes)
        self.byteCount = byteCount
        self.owner = owner
        self.pooledCapacity = 0
    }

    /// True when the bytes belong to another object (read-only).
    public var isBorrowed: Bool { owner != nil }

    deinit {
        if owner != nil { return }
        if pooledCapacity > 0 {
            BufferPool.shared.give(bytes, capacity: pooledCapacity)
        } else {
            bytes.deallocate()
        }
    }
}

/// An n-dimensional array: a value over shared storage, row-major by default.
///
/// Copying a `Tensor` copies the description, not the bytes; writes go through
/// `withUnsafeMutable…`, which copies first when the storage is shared,
/// borrowed or the layout is not contiguous (copy-on-write). Reshape of a
/// contiguous tensor, transpose and slice are views.
public struct Tensor: @unchecked Sendable {
    public private(set) var storage: TensorStorage
    public let dtype: DType
    public let shape: [Int]
    /// Element strides, one per axis.
    public let strides: [Int]
    /// Element offset of the first element in `storage`.
    public let offset: Int

    public init(storage: TensorStorage, dtype: DType, shape: [Int], strides: [Int]? = nil, offset: Int = 0) {
        self.storage = storage
        self.dtype = dtype
        self.shape = shape
        self.strides = strides ?? Tensor.contiguousStrides(for: shape)
        self.offset = offset
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int], dtype: DType = .f32) {
        let count = shape.reduce(1, *)
        self.init(storage: TensorStorage(byteCount: count * dtype.byteSize), dtype: dtype, shape: shape)
    }

    /// An f32 tensor with the given values (row-major); `values.count` must equal the shape's product.
    public init(shape: [Int], floats values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "Tensor(shape:floats:): \(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .f32)
        let base = storage.bytes.assumingMemoryBound(to: Float.self)
        values.withUnsafeBufferPointer { source in
            if let address = source.baseAddress { base.update(from: address, count: values.count) }
        }
    }

    /// An i32 tensor with the given values (row-major).
    public init(shape: [Int], int32s values: [Int32]) {
        precondition(values.count == shape.reduce(1, *), "Tensor(shape:int32s:): \(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .i32)
        let base = storage.bytes.assumingMemoryBound(to: Int32.self)
        values.withUnsafeBufferPointer { source in
            if let address = source.baseAddress { base.update(from: address, count: values.count) }
        }
    }

    /// A rank-0 f32 tensor.
    public init(scalar: Float) {
        self.init(shape: [], floats: [scalar])
    }

    public static func contiguousStrides(for shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    public var rank: Int { shape.count }
    public var count: Int { shape.reduce(1, *) }

    /// Row-major and gap-free: the elements are `count` consecutive values from `offset`.
    public var isContiguous: Bool {
        var expected = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] != 1 {
            if strides[axis] != expected { return false }
            expected *= shape[axis]
        }
        return true
    }

    /// This tensor, copied into fresh row-major storage unless it already is contiguous.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        let result = Tensor(storage: TensorStorage(uninitializedByteCount: count * dtype.byteSize), dtype: dtype, shape: shape)
        StridedCopy.copy(
            from: storage.bytes, offset: offset, shape: shape, strides: strides, elementSize: dtype.byteSize,
            to: result.storage.bytes)
        return result
    }

    /// The same elements in another shape (one axis may be -1). A view when contiguous.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            resolved[inferred] = known == 0 ? 0 : count / known
        }
        precondition(resolved.reduce(1, *) == count, "reshape \(shape) -> \(newShape): element counts differ")
        let base = contiguous()
        return Tensor(storage: base.storage, dtype: dtype, shape: resolved, offset: base.offset)
    }

    /// A view with two axes swapped.
    public func transposed(_ first: Int, _ second: Int) -> Tensor {
        var newShape = shape
        var newStrides = strides
        newShape.swapAt(first, second)
        newStrides.swapAt(first, second)
        return Tensor(storage: storage, dtype: dtype, shape: newShape, strides: newStrides, offset: offset)
    }

    /// A view of `range` along `axis`.
    public func sliced(axis: Int, _ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[axis], "slice \(range) out of axis \(axis) of \(shape)")
        var newShape = shape
        newShape[axis] = range.count
        return Tensor(
            storage: storage, dtype: dtype, shape: newShape, strides: strides,
            offset: offset + range.lowerBound * strides[axis])
    }

    /// Reads contiguous elements of type `T` (which must match `dtype`).
    public func withUnsafeElements<T, R>(_ type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.size == dtype.byteSize, "element type does not match \(dtype)")
        let base = contiguous()
        let pointer = (base.storage.bytes + base.offset * dtype.byteSize).assumingMemoryBound(to: T.self)
        return try body(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// Writes contiguous elements of type `T`, copying first if the storage
    /// is shared, borrowed or strided.
    public mutating func withUnsafeMutableElements<T, R>(
        _ type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(MemoryLayout<T>.size == dtype.byteSize, "element type does not match \(dtype)")
        if !isContiguous || storage.isBorrowed || !isKnownUniquelyReferenced(&storage) || offset != 0 {
            let copy = Tensor(zeros: shape, dtype: dtype)
            let source = contiguous()
            copy.storage.bytes.copyMemory(
                from: source.storage.bytes + source.offset * dtype.byteSize, byteCount: count * dtype.byteSize)
            self = copy
        }
        let pointer = storage.bytes.assumingMemoryBound(to: T.self)
        return try body(UnsafeMutableBufferPointer(start: pointer, count: count))
    }

    public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeElements(Float.self, body)
    }

    public mutating func withUnsafeMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeMutableElements(Float.self, body)
    }

    /// All elements as `Float` (f32 only), row-major.
    public var floats: [Float] {
        precondition(dtype == .f32, "floats of a \(dtype) tensor")
        return withUnsafeFloats { Array($0) }
    }

    /// All elements as `Int32` (i32 only), row-major.
    public var int32s: [Int32] {
        precondition(dtype == .i32, "int32s of a \(dtype) tensor")
        return withUnsafeElements(Int32.self) { Array($0) }
    }

    /// The single value of a one-element f32 tensor.
    public var scalarValue: Float {
        precondition(count == 1 && dtype == .f32, "scalarValue of shape \(shape) \(dtype)")
        return withUnsafeFloats { $0[0] }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor<\(dtype)>\(shape)" }
}
