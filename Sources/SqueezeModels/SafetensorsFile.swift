import Foundation
import SqueezeTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file opened read-only: the header is parsed and validated up
/// front, tensor bytes are read on demand from a private memory mapping (or
/// from a copy in memory when the file cannot be mapped).
///
/// Every size in the file is untrusted: offsets, shapes and byte lengths are
/// checked against each other and against the file size before any access.
public final class SafetensorsFile: Sendable {
    public let path: String
    /// The optional `__metadata__` object (string to string).
    public let metadata: [String: String]
    /// Tensors with a known dtype, by name.
    public let entries: [String: SafetensorsEntry]
    /// Tensors whose dtype this reader does not know: name to raw dtype.
    /// Their offsets are still validated, but their bytes are not exposed.
    public let skipped: [String: String]

    private let storage: FileBytes
    /// Offset of the data buffer within the file (8 + header length).
    private let dataStart: Int

    public init(path: String) throws(ModelFileError) {
        let storage = try FileBytes(path: path)
        let header = try SafetensorsHeader(file: path, bytes: storage.bytes)
        self.path = path
        self.storage = storage
        self.dataStart = header.dataStart
        self.metadata = header.metadata
        self.entries = header.entries
        self.skipped = header.skipped
    }

    /// The names of the readable tensors, sorted by UTF-8 bytes.
    public var names: [String] { entries.keys.sorted(by: Safetensors.utf8Less) }

    /// Calls `body` with the raw little-endian bytes of tensor `name`. The
    /// buffer is only valid during the call and is not necessarily aligned.
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let entry = try entry(name)
        return try body(slice(entry))
    }

    /// Tensor `name` as a `Tensor`.
    ///
    /// F32, I64, I32, I8, U8 and BOOL (as u8) are views of the mapped file, no
    /// copy: the tensor's storage keeps the mapping alive and is read-only (a
    /// write through `withUnsafeMutable…` copies first). A tensor whose bytes
    /// are not aligned for its element type is copied instead. F16 and BF16
    /// are widened into a new f32 tensor, I16 into i32; F64 is refused.
    public func tensor(_ name: String) throws(ModelFileError) -> Tensor {
        let entry = try entry(name)
        let bytes = slice(entry)
        let count = entry.elementCount
        switch entry.dtype {
        case .f16, .bf16:
            var result = Tensor(zeros: entry.shape, dtype: .f32)
            let widen = entry.dtype == .f16 ? Safetensors.floatFromHalf : Safetensors.floatFromBFloat16
            result.withUnsafeMutableFloats { out in
                for i in 0..<count {
                    out[i] = widen(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                }
            }
            return result
        case .i16:
            var result = Tensor(zeros: entry.shape, dtype: .i32)
            result.withUnsafeMutableElements(Int32.self) { out in
                for i in 0..<count {
                    out[i] = Int32(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)))
                }
            }
            return result
        case .f64:
            throw ModelFileError(file: path, "tensor `\(name)` has dtype F64, which has no tensor type; convert the checkpoint to F32")
        case .f32, .i64, .i32, .i8, .u8, .bool:
            let dtype = entry.dtype.tensorDType ?? .u8
            #if _endian(little)
            if let base = bytes.baseAddress, Int(bitPattern: base) % dtype.byteSize == 0 {
                let view = TensorStorage(borrowing: base, byteCount: bytes.count, owner: storage)
                return Tensor(storage: view, dtype: dtype, shape: entry.shape)
            }
            #endif
            let result = Tensor(zeros: entry.shape, dtype: dtype)
            if let base = bytes.baseAddress {
                result.storage.bytes.copyMemory(from: base, byteCount: bytes.count)
            }
            #if !_endian(little)
            let size = dtype.byteSize
            let target = UnsafeMutableRawBufferPointer(start: result.storage.bytes, count: bytes.count)
            for element in stride(from: 0, to: bytes.count, by: size) {
                target[element..<(element + size)].reverse()
            }
            #endif
            return result
        }
    }

    /// Every readable tensor (see `tensor(_:)`), sorted by name.
    public func tensors() throws(ModelFileError) -> [(name: String, tensor: Tensor)] {
        var result: [(name: String, tensor: Tensor)] = []
        for name in names {
            result.append((name, try tensor(name)))
        }
        return result
    }

    /// The tensor as Floats: F32 copied, F16 and BF16 widened exactly.
    public func floats(_ name: String) throws(ModelFileError) -> [Float] {
        let entry = try entry(name)
        let bytes = slice(entry)
        let count = bytes.count / entry.dtype.byteSize
        switch entry.dtype {
        case .f32:
            return Array(unsafeUninitializedCapacity: count) { buffer, initialized in
                for i in 0..<count {
                    let bits = bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)
                    buffer.initializeElement(at: i, to: Float(bitPattern: UInt32(littleEndian: bits)))
                }
                initialized = count
            }
        case .f16:
            return (0..<count).map { i in
                Safetensors.floatFromHalf(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        case .bf16:
            return (0..<count).map { i in
                Safetensors.floatFromBFloat16(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        default:
            throw ModelFileError(file: path, "tensor `\(name)` has dtype \(entry.dtype.rawValue); expected F32, F16 or BF16")
        }
    }

    /// The tensor as Int64s: I64 copied; I32, I16, I8 and U8 widened.
    public func int64s(_ name: String) throws(ModelFileError) -> [Int64] {
        let entry = try entry(name)
        let bytes = slice(entry)
        let count = bytes.count / entry.dtype.byteSize
        switch entry.dtype {
        case .i64:
            return (0..<count).map { Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .i32:
            return (0..<count).map { Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
        case .i16:
            return (0..<count).map { Int64(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
        case .i8:
            return (0..<count).map { Int64(bytes.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8:
            return (0..<count).map { Int64(bytes[$0]) }
        default:
            throw ModelFileError(file: path, "tensor `\(name)` has dtype \(entry.dtype.rawValue); expected an integer dtype")
        }
    }

    private func entry(_ name: String) throws(ModelFileError) -> SafetensorsEntry {
        if let entry = entries[name] { return entry }
        if let raw = skipped[name] {
            throw ModelFileError(file: path, "tensor `\(name)` has unsupported dtype \(raw)")
        }
        throw ModelFileError(file: path, "no tensor named `\(name)`")
    }

    /// The entry's bytes; in bounds because the header validation checked
    /// `dataStart + byteRange.upperBound <= file size`.
    private func slice(_ entry: SafetensorsEntry) -> UnsafeRawBufferPointer {
        let range = (dataStart + entry.byteRange.lowerBound)..<(dataStart + entry.byteRange.upperBound)
        return UnsafeRawBufferPointer(rebasing: storage.bytes[range])
    }
}

/// The whole file's bytes, owned: a read-only private mapping, or an
/// allocation filled by `read` when mapping fails. Never written after init,
/// hence safe to share across threads.
final class FileBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    private let mapped: Bool

    init(path: String) throws(ModelFileError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ModelFileError(file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ModelFileError(file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelFileError(file: path, "not a regular file")
        }
        guard info.st_size >= 8, let size = Int(exactly: info.st_size) else {
            throw ModelFileError(file: path, "file is \(info.st_size) bytes, shorter than the 8-byte header length")
        }
        if let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED {
            bytes = UnsafeRawBufferPointer(start: address, count: size)
            mapped = true
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        var filled = 0
        while filled < size {
            let n = pread(fd, buffer.baseAddress.map { $0 + filled }, size - filled, off_t(filled))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let reason = n == 0 ? "file shrank while reading" : String(cString: strerror(errno))
                buffer.deallocate()
                throw ModelFileError(file: path, "cannot read: \(reason)")
            }
            filled += n
        }
        bytes = UnsafeRawBufferPointer(buffer)
        mapped = false
    }

    deinit {
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
        } else {
            bytes.deallocate()
        }
    }
}
