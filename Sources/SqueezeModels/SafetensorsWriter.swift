import Foundation
import SqueezeSupport
import SqueezeTensor

/// Writes safetensors files deterministically: header keys sorted by UTF-8
/// bytes (`__metadata__` included), the header padded with spaces to a
/// multiple of 8 bytes, and data laid out with no gaps ordered by element size
/// (largest first) then name, as the reference implementation does. That
/// order keeps every tensor aligned to its element size, so readers can map
/// it without copying. Files are written atomically (temp file, fsync, rename).
public enum SafetensorsWriter {
    /// A tensor given as its raw little-endian bytes.
    public typealias RawTensor = (name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8])

    /// Writes raw tensors to `path`.
    public static func write(
        _ tensors: [RawTensor], metadata: [String: String] = [:], to path: String
    ) throws(ModelFileError) {
        let pending = tensors.map { tensor in
            Pending(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, byteCount: tensor.bytes.count) {
                (writer: AtomicFileWriter) throws(ModelFileError) in try writer.write(tensor.bytes)
            }
        }
        try write(pending, metadata: metadata, to: path)
    }

    /// Writes `Tensor`s to `path` in their own dtypes, straight from their
    /// storage (strided views are made contiguous first).
    public static func write(
        tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String
    ) throws(ModelFileError) {
        try write(tensors.map { pending($0.name, $0.tensor) }, metadata: metadata, to: path)
    }

    /// Writes `Tensor`s as `write(tensors:)` does, except each f32 weight
    /// named in `masks` (by its name in `tensors`), which is stored sparsely
    /// (`SparseStorage`): its mask bits and kept values, the masks listed in
    /// the `squeeze.sparse` metadata. Pruned positions are not stored at all;
    /// reading gives +0.0 there.
    public static func write(
        tensors: [(name: String, tensor: Tensor)], masks: [String: WeightMask], metadata: [String: String] = [:],
        to path: String
    ) throws(ModelFileError) {
        var pending: [Pending] = []
        var written: [(name: String, mask: WeightMask)] = []
        for (name, tensor) in tensors {
            guard let mask = masks[name] else {
                pending.append(Self.pending(name, tensor))
                continue
            }
            guard tensor.dtype == .f32, tensor.shape == mask.shape else {
                throw ModelFileError(file: path, "`\(name)` is \(tensor.dtype) \(tensor.shape), but its mask is for f32 \(mask.shape)")
            }
            let values = SparseStorage.keptValues(tensor, mask: mask)
            let bits = mask.packedBits
            pending.append(Pending(name: name + SparseStorage.maskSuffix, dtype: .u8, shape: [bits.count], byteCount: bits.count) {
                (writer: AtomicFileWriter) throws(ModelFileError) in try writer.write(bits)
            })
            pending.append(Self.pending(name + SparseStorage.valuesSuffix, Tensor(shape: [values.count], floats: values)))
            written.append((name, mask))
        }
        let unknown = Set(masks.keys).subtracting(tensors.map(\.name))
        if let name = unknown.sorted().first {
            throw ModelFileError(file: path, "a mask is given for `\(name)`, which is not among the tensors written")
        }
        var metadata = metadata
        if !written.isEmpty { metadata[SparseStorage.metadataKey] = SparseStorage.metadataValue(written) }
        try write(pending, metadata: metadata, to: path)
    }

    /// A tensor to write from its storage.
    static func pending(_ name: String, _ tensor: Tensor) -> Pending {
        Pending(
            name: name, dtype: SafetensorsDType(tensor.dtype), shape: tensor.shape,
            byteCount: tensor.count * tensor.dtype.byteSize
        ) { (writer: AtomicFileWriter) throws(ModelFileError) in
            let contiguous = tensor.contiguous()
            let size = contiguous.dtype.byteSize
            let start = contiguous.storage.bytes + contiguous.offset * size
            #if _endian(little)
            try writer.write(UnsafeRawBufferPointer(start: start, count: contiguous.count * size))
            #else
            var swapped = [UInt8](UnsafeRawBufferPointer(start: start, count: contiguous.count * size))
            for element in stride(from: 0, to: swapped.count, by: size) {
                swapped[element..<(element + size)].reverse()
            }
            try writer.write(swapped)
            #endif
        }
    }

    /// One tensor to write: its header fields and how to emit its bytes.
    struct Pending {
        var name: String
        var dtype: SafetensorsDType
        var shape: [Int]
        var byteCount: Int
        var emit: (AtomicFileWriter) throws(ModelFileError) -> Void
    }

    static func write(_ tensors: [Pending], metadata: [String: String], to path: String) throws(ModelFileError) {
        let sorted = tensors.sorted {
            $0.dtype.byteSize != $1.dtype.byteSize ? $0.dtype.byteSize > $1.dtype.byteSize : Safetensors.utf8Less($0.name, $1.name)
        }
        let header = try headerBytes(sorted, metadata: metadata, file: path)
        var length = UInt64(header.count).littleEndian
        let prefix = withUnsafeBytes(of: &length) { Array($0) }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(prefix)
        try writer.write(header)
        for tensor in sorted {
            try tensor.emit(writer)
        }
        try writer.commit()
    }

    /// The padded JSON header for tensors already in data order.
    static func headerBytes(_ sorted: [Pending], metadata: [String: String], file: String) throws(ModelFileError) -> [UInt8] {
        var members: [(key: String, json: String)] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { Safetensors.utf8Less($0.key, $1.key) }
                .map { "\(JSONText.string($0.key)):\(JSONText.string($0.value))" }
            members.append((Safetensors.metadataKey, "{" + pairs.joined(separator: ",") + "}"))
        }
        var offset = 0
        var seen: Set<[UInt8]> = []
        for tensor in sorted {
            guard tensor.name != Safetensors.metadataKey else {
                throw ModelFileError(file: file, "tensor name `__metadata__` is reserved")
            }
            guard seen.insert(Array(tensor.name.utf8)).inserted else {
                throw ModelFileError(file: file, "duplicate tensor name `\(tensor.name)`")
            }
            guard let expected = Safetensors.byteCount(shape: tensor.shape, byteSize: tensor.dtype.byteSize) else {
                throw ModelFileError(file: file, "tensor `\(tensor.name)`: shape \(tensor.shape) has a negative dimension or overflows")
            }
            guard expected == tensor.byteCount else {
                throw ModelFileError(file: file, "tensor `\(tensor.name)`: \(tensor.byteCount) bytes, but shape \(tensor.shape) of \(tensor.dtype.rawValue) needs \(expected)")
            }
            let end = offset + expected
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            members.append((tensor.name, #"{"dtype":"\#(tensor.dtype.rawValue)","shape":[\#(shape)],"data_offsets":[\#(offset),\#(end)]}"#))
            offset = end
        }
        members.sort { Safetensors.utf8Less($0.key, $1.key) }
        let json = "{" + members.map { "\(JSONText.string($0.key)):\($0.json)" }.joined(separator: ",") + "}"
        var bytes = Array(json.utf8)
        let padding = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        return bytes
    }
}
