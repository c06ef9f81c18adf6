/// Two 4-bit codes per byte.
///
/// Nibble order: code `2i` goes to the low nibble (bits 0–3) of byte `i`, code
/// `2i + 1` to the high nibble (bits 4–7), the layout of GGML/AWQ-style int4
/// tensors. An odd count leaves the last byte's high nibble 0. Signed codes
/// (−8…7) are stored as 4-bit two's complement and sign-extended on unpacking;
/// unsigned codes are 0…15. Only the low four bits of each code are stored, so
/// codes outside those ranges do not round-trip.
public enum Int4Packing {
    /// Bytes that hold `count` codes: `⌈count / 2⌉`.
    public static func packedByteCount(_ count: Int) -> Int { (count + 1) / 2 }

    public static func pack(_ codes: UnsafeBufferPointer<Int8>) -> [UInt8] {
        codes.withMemoryRebound(to: UInt8.self) { pack($0) }
    }

    public static func pack(_ codes: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        let count = codes.count
        return [UInt8](unsafeUninitializedCapacity: packedByteCount(count)) { bytes, initialized in
            guard let output = bytes.baseAddress, let input = codes.baseAddress else {
                initialized = 0
                return
            }
            let pairs = count / 2
            for i in 0..<pairs {
                output[i] = (input[2 * i] & 0x0F) | (input[2 * i + 1] << 4)
            }
            if count % 2 == 1 { output[pairs] = input[count - 1] & 0x0F }
            initialized = packedByteCount(count)
        }
    }

    public static func pack(_ codes: [Int8]) -> [UInt8] { codes.withUnsafeBufferPointer { pack($0) } }
    public static func pack(_ codes: [UInt8]) -> [UInt8] { codes.withUnsafeBufferPointer { pack($0) } }

    /// The `count` signed codes (−8…7) held by `packed`.
    ///
    /// - Throws: `packedSizeMismatch` unless `packed.count == ⌈count / 2⌉`.
    public static func unpackSigned(_ packed: UnsafeBufferPointer<UInt8>, count: Int) throws(QuantizationError) -> [Int8] {
        guard count >= 0, packed.count == packedByteCount(count) else {
            throw .packedSizeMismatch(byteCount: packed.count, count: count)
        }
        return [Int8](unsafeUninitializedCapacity: count) { codes, initialized in
            guard let output = codes.baseAddress, let input = packed.baseAddress else {
                initialized = 0
                return
            }
            for i in 0..<count {
                let byte = input[i / 2]
                // Put the wanted nibble in the top four bits, then shift back arithmetically.
                let top = i % 2 == 0 ? byte << 4 : byte & 0xF0
                output[i] = Int8(bitPattern: top) >> 4
            }
            initialized = count
        }
    }

    /// The `count` unsigned codes (0…15) held by `packed`.
    ///
    /// - Throws: `packedSizeMismatch` unless `packed.count == ⌈count / 2⌉`.
    public static func unpackUnsigned(_ packed: UnsafeBufferPointer<UInt8>, count: Int) throws(QuantizationError) -> [UInt8] {
        guard count >= 0, packed.count == packedByteCount(count) else {
            throw .packedSizeMismatch(byteCount: packed.count, count: count)
        }
        return [UInt8](unsafeUninitializedCapacity: count) { codes, initialized in
            guard let output = codes.baseAddress, let input = packed.baseAddress else {
                initialized = 0
                return
            }
            for i in 0..<count {
                let byte = input[i / 2]
                output[i] = i % 2 == 0 ? byte & 0x0F : byte >> 4
            }
            initialized = count
        }
    }

    public static func unpackSigned(_ packed: [UInt8], count: Int) throws(QuantizationError) -> [Int8] {
        try packed.withUnsafeBufferPointer { (bytes) throws(QuantizationError) in try unpackSigned(bytes, count: count) }
    }

    public static func unpackUnsigned(_ packed: [UInt8], count: Int) throws(QuantizationError) -> [UInt8] {
        try packed.withUnsafeBufferPointer { (bytes) throws(QuantizationError) in try unpackUnsigned(bytes, count: count) }
    }
}
