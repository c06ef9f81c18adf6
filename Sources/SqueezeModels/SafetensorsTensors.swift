import SqueezeTensor

extension SafetensorsFile {
    /// Tensor `name` as an f32 `Tensor` (i32 for I32 entries).
    ///
    /// F32 and I32 data that is suitably aligned is not copied: the tensor
    /// borrows the file's read-only mapping and keeps this file object (and so
    /// the mapping, which lives as long as the object) alive; the first write
    /// copies it. (This relies on `withBytes` handing out the object's own
    /// immutable bytes, which this module guarantees.) F16 and BF16 are widened into a new f32 tensor.
    public func tensor(_ name: String) throws(ModelFileError) -> Tensor {
        guard let entry = entries[name] else {
            if let raw = skipped[name] {
                throw ModelFileError(file: path, "tensor `\(name)` has unsupported dtype \(raw)")
            }
            throw ModelFileError(file: path, "no tensor named `\(name)`")
        }
        switch entry.dtype {
        case .f32, .i32:
            let dtype: DType = entry.dtype == .f32 ? .f32 : .i32
            let borrowed: Tensor? = try? withBytes(of: name) { bytes -> Tensor? in
                guard let base = bytes.baseAddress, Int(bitPattern: base) % 4 == 0, Int(1).littleEndian == 1 else { return nil }
                let storage = TensorStorage(borrowing: base, byteCount: bytes.count, owner: self)
                return Tensor(storage: storage, dtype: dtype, shape: entry.shape)
            }
            if let borrowed { return borrowed }
            if entry.dtype == .i32 {
                return Tensor(shape: entry.shape, int32s: try int64s(name).map { Int32(truncatingIfNeeded: $0) })
            }
            return Tensor(shape: entry.shape, floats: try floats(name))
        case .f16, .bf16:
            return Tensor(shape: entry.shape, floats: try floats(name))
        default:
            throw ModelFileError(file: path, "tensor `\(name)` has dtype \(entry.dtype.rawValue); expected F32, F16, BF16 or I32")
        }
    }
}
