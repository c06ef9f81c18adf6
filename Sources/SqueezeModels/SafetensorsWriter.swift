import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files deterministically: tensors sorted by name (UTF-8
/// bytes), header keys sorted (`__metadata__` included), the header padded
/// with spaces to a multiple of 8 bytes as the reference implementation does,
/// and data laid out in name order with no gaps.
public enum SafetensorsWriter {
    public typealias Tensor = (name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8])

    /// Writes `tensors` to `path` atomically (temp file, fsync, rename).
    public static func write(
        _ tensors: [Tensor], metadata: [String: String] = [:], to path: String
    ) throws(ModelFileError) {
        let sorted = tensors.sorted { Safetensors.utf8Less($0.name, $1.name) }
        let header = try headerBytes(sorted, metadata: metadata, file: path)
        var length = UInt64(header.count).littleEndian
        let prefix = withUnsafeBytes(of: &length) { Array($0) }
        try writeAtomically(path: path, chunks: [prefix, header] + sorted.map(\.bytes))
    }

    /// The padded JSON header for tensors already sorted by name.
    static func headerBytes(_ sorted: [Tensor], metadata: [String: String], file: String) throws(ModelFileError) -> [UInt8] {
        var members: [(key: String, json: String)] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { Safetensors.utf8Less($0.key, $1.key) }
                .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            members.append((Safetensors.metadataKey, "{" + pairs.joined(separator: ",") + "}"))
        }
        var offset = 0
        var previous: String?
        for tensor in sorted {
            guard tensor.name != Safetensors.metadataKey else {
                throw ModelFileError(file: file, "tensor name `__metadata__` is reserved")
            }
            guard tensor.name != previous else {
                throw ModelFileError(file: file, "duplicate tensor name `\(tensor.name)`")
            }
            previous = tensor.name
            guard let expected = Safetensors.byteCount(shape: tensor.shape, byteSize: tensor.dtype.byteSize) else {
                throw ModelFileError(file: file, "tensor `\(tensor.name)`: shape \(tensor.shape) has a negative dimension or overflows")
            }
            guard expected == tensor.bytes.count else {
                throw ModelFileError(file: file, "tensor `\(tensor.name)`: \(tensor.bytes.count) bytes, but shape \(tensor.shape) of \(tensor.dtype.rawValue) needs \(expected)")
            }
            let end = offset + expected
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            members.append((tensor.name, #"{"dtype":"\#(tensor.dtype.rawValue)","shape":[\#(shape)],"data_offsets":[\#(offset),\#(end)]}"#))
            offset = end
        }
        members.sort { Safetensors.utf8Less($0.key, $1.key) }
        let json = "{" + members.map { "\(jsonString($0.key)):\($0.json)" }.joined(separator: ",") + "}"
        var bytes = Array(json.utf8)
        let padding = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        return bytes
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func jsonString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    private static func writeAtomically(path: String, chunks: [[UInt8]]) throws(ModelFileError) {
        func failure(_ what: String) -> ModelFileError {
            ModelFileError(file: path, "cannot \(what): \(String(cString: strerror(errno)))")
        }
        let temp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("create \(temp)") }
        var closed = false
        defer {
            if !closed {
                close(fd)
                unlink(temp)
            }
        }
        for chunk in chunks {
            var written = 0
            while written < chunk.count {
                let n = chunk.withUnsafeBytes { raw in
                    writeBytes(fd, raw.baseAddress.map { $0 + written }, chunk.count - written)
                }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw failure("write \(temp)") }
                written += n
            }
        }
        guard fsync(fd) == 0 else { throw failure("fsync \(temp)") }
        closed = true
        guard close(fd) == 0 else {
            unlink(temp)
            throw failure("close \(temp)")
        }
        guard rename(temp, path) == 0 else {
            let error = failure("rename \(temp) to \(path)")
            unlink(temp)
            throw error
        }
    }
}

/// POSIX `write`, which the enum's own `write` method would otherwise shadow.
private func writeBytes(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buffer, count)
    #else
    Darwin.write(fd, buffer, count)
    #endif
}
