import Foundation

/// The parsed and validated header of a safetensors file.
struct SafetensorsHeader {
    var dataStart: Int
    var metadata: [String: String] = [:]
    var entries: [String: SafetensorsEntry] = [:]
    var skipped: [String: String] = [:]

    /// Parses the header in `bytes` (the whole file) and checks every entry
    /// against the data buffer, which is the rest of the file.
    init(file: String, bytes: UnsafeRawBufferPointer) throws(ModelFileError) {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file, message) }

        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let declared = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard declared <= Safetensors.maxHeaderLength else {
            throw fail("header length \(declared) is larger than the 100 MB limit")
        }
        let headerLength = Int(declared)
        guard headerLength <= bytes.count - 8 else {
            throw fail("header length \(headerLength) is larger than the \(bytes.count - 8) bytes after the length field")
        }
        dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart

        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        guard let text = String(bytes: headerBytes, encoding: .utf8) else {
            throw fail("header is not valid UTF-8")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        } catch {
            throw fail("header is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw fail("header is not a JSON object")
        }

        var ranges: [(range: Range<Int>, name: String)] = []
        for (name, value) in object {
            if name == Safetensors.metadataKey {
                guard let raw = value as? [String: Any] else {
                    throw fail("`__metadata__` is not an object")
                }
                for (key, item) in raw {
                    guard let string = item as? String else {
                        throw fail("`__metadata__` value for `\(key)` is not a string")
                    }
                    metadata[key] = string
                }
                continue
            }
            guard let fields = value as? [String: Any] else {
                throw fail("tensor `\(name)`: entry is not an object")
            }
            guard let rawDType = fields["dtype"] as? String else {
                throw fail("tensor `\(name)`: `dtype` is missing or not a string")
            }
            guard let shapeValues = fields["shape"] as? [Any] else {
                throw fail("tensor `\(name)`: `shape` is missing or not an array")
            }
            var shape: [Int] = []
            for item in shapeValues {
                guard let dim = Self.integer(item) else {
                    throw fail("tensor `\(name)`: `shape` holds a non-integer: \(Self.describe(item))")
                }
                guard dim >= 0 else {
                    throw fail("tensor `\(name)`: negative dimension \(dim) in shape")
                }
                shape.append(dim)
            }
            guard let offsetValues = fields["data_offsets"] as? [Any], offsetValues.count == 2,
                  let begin = offsetValues.first.flatMap(Self.integer),
                  let end = offsetValues.last.flatMap(Self.integer)
            else {
                throw fail("tensor `\(name)`: `data_offsets` is missing or not two integers")
            }
            guard begin >= 0 else {
                throw fail("tensor `\(name)`: negative data offset \(begin)")
            }
            guard begin <= end else {
                throw fail("tensor `\(name)`: data offsets begin \(begin) > end \(end)")
            }
            guard end <= dataLength else {
                throw fail("tensor `\(name)`: data offset end \(end) is beyond the \(dataLength)-byte data buffer")
            }
            guard let dtype = SafetensorsDType(rawValue: rawDType) else {
                skipped[name] = rawDType
                ranges.append((begin..<end, name))
                continue
            }
            guard let expected = Safetensors.byteCount(shape: shape, byteSize: dtype.byteSize) else {
                throw fail("tensor `\(name)`: shape \(shape) overflows")
            }
            guard expected == end - begin else {
                throw fail("tensor `\(name)`: \(end - begin) data bytes, but shape \(shape) of \(rawDType) needs \(expected)")
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
            ranges.append((begin..<end, name))
        }

        // Empty ranges overlap nothing; the others must be disjoint.
        let sorted = ranges.filter { !$0.range.isEmpty }.sorted {
            ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound)
        }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.range.lowerBound < previous.range.upperBound {
            let (first, second) = Safetensors.utf8Less(previous.name, next.name)
                ? (previous.name, next.name) : (next.name, previous.name)
            throw fail("tensors `\(first)` and `\(second)` have overlapping data ranges")
        }
    }

    /// A JSON integer as Int; nil for booleans, numbers written with a
    /// fraction or exponent (`2.0` is not a dimension) and out-of-range numbers.
    private static func integer(_ value: Any) -> Int? {
        guard let number = value as? NSNumber else { return nil }
        // Foundation represents JSON booleans as NSNumber with objCType "c"
        // and numbers written with a fraction or exponent as "d".
        switch String(cString: number.objCType) {
        case "c", "d", "f": return nil
        default: return value as? Int
        }
    }

    /// A JSON value as it appears in messages.
    private static func describe(_ value: Any) -> String {
        if let number = value as? NSNumber {
            return String(cString: number.objCType) == "c" ? (number.boolValue ? "true" : "false") : number.stringValue
        }
        if let string = value as? String { return "\"\(string)\"" }
        if value is NSNull { return "null" }
        return value is [Any] ? "an array" : "an object"
    }
}
