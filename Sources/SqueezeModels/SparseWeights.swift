import Foundation
import SqueezeSupport
import SqueezeTensor

/// How a pruned weight matrix's kept positions are constrained.
public enum SparsityPattern: Sendable, Hashable, CustomStringConvertible {
    /// Any positions.
    case unstructured
    /// At most `n` kept in every group of `m` consecutive elements of a row
    /// (the row length a multiple of `m`), e.g. 2:4.
    case nOfM(n: Int, m: Int)

    /// `unstructured` or `N:M` (1 ≤ N ≤ M ≤ 255).
    public init?(_ text: String) {
        if text == "unstructured" {
            self = .unstructured
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), n >= 1, n <= m, m <= 255 else { return nil }
        self = .nOfM(n: n, m: m)
    }

    public var description: String {
        switch self {
        case .unstructured: "unstructured"
        case .nOfM(let n, let m): "\(n):\(m)"
        }
    }
}

/// Which elements of a weight matrix survive pruning. The mask, not the
/// values, is the truth: a pruned position is +0.0 in the model whatever was
/// there before, and a kept position keeps its value even when it is zero
/// (or -0.0). Bits are packed 8 per byte, row-major, least significant bit
/// first; 1 means kept, and the padding bits of the last byte are 0.
public struct WeightMask: Sendable, Hashable {
    public let shape: [Int]
    public let pattern: SparsityPattern
    public let packedBits: [UInt8]

    /// A mask from packed bits, checked against `shape` and `pattern` (`file`
    /// names the source in errors).
    public init(shape: [Int], pattern: SparsityPattern, packedBits: [UInt8], file: String = "<mask>") throws(ModelFileError) {
        guard shape.count == 2, shape.allSatisfy({ $0 >= 0 }), let count = Self.elementCount(shape) else {
            throw ModelFileError(file: file, "a weight mask needs a 2-D shape, got \(shape)")
        }
        guard packedBits.count == (count + 7) / 8 else {
            throw ModelFileError(file: file, "the mask of a \(shape) weight needs \((count + 7) / 8) bytes, got \(packedBits.count)")
        }
        if count % 8 != 0, let last = packedBits.last, last >> (count % 8) != 0 {
            throw ModelFileError(file: file, "the mask sets bits past the \(count) elements of its \(shape) weight")
        }
        self.shape = shape
        self.pattern = pattern
        self.packedBits = packedBits
        if let problem = patternViolation() { throw ModelFileError(file: file, problem) }
    }

    /// A mask keeping the positions where `keep` is true (row-major).
    public init(shape: [Int], pattern: SparsityPattern, keep: [Bool]) throws(ModelFileError) {
        guard let count = Self.elementCount(shape), keep.count == count else {
            throw ModelFileError(file: "<mask>", "\(keep.count) mask values for a \(shape) weight")
        }
        var bits = [UInt8](repeating: 0, count: (count + 7) / 8)
        for (index, kept) in keep.enumerated() where kept { bits[index >> 3] |= 1 << UInt8(index & 7) }
        try self.init(shape: shape, pattern: pattern, packedBits: bits)
    }

    /// The mask of `weight`'s non-zero elements (±0.0 are pruned).
    public init(keepingNonZerosOf weight: Tensor, pattern: SparsityPattern) throws(ModelFileError) {
        guard weight.dtype == .f32 else { throw ModelFileError(file: "<mask>", "a weight mask needs an f32 weight, got \(weight.dtype)") }
        try self.init(shape: weight.shape, pattern: pattern, keep: weight.contiguous().floats.map { $0 != 0 })
    }

    public var elementCount: Int { Self.elementCount(shape) ?? 0 }

    public func isKept(_ index: Int) -> Bool { packedBits[index >> 3] >> UInt8(index & 7) & 1 == 1 }

    public var keptCount: Int { packedBits.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// The share of pruned elements.
    public var sparsity: Double { elementCount == 0 ? 0 : 1 - Double(keptCount) / Double(elementCount) }

    /// `weight` with every pruned position set to +0.0.
    public func apply(to weight: Tensor) -> Tensor {
        var result = weight
        zeroPruned(in: &result)
        return result
    }

    /// Sets every pruned position of `weight` to +0.0, in place (no copy
    /// when `weight` is uniquely held, contiguous and already zero there).
    public func zeroPruned(in weight: inout Tensor) {
        precondition(weight.shape == shape && weight.dtype == .f32, "mask \(shape) applied to \(weight.dtype) \(weight.shape)")
        if !weight.isContiguous { weight = weight.contiguous() }
        var needsChange = false
        weight.withUnsafeFloats { values in
            forEachPruned { index in if values[index].bitPattern != 0 { needsChange = true } }
        }
        guard needsChange else { return }
        weight.withUnsafeMutableFloats { values in
            forEachPruned { values[$0] = 0 }
        }
    }

    /// Calls `body` with every kept index, in increasing order.
    func forEachKept(_ body: (Int) -> Void) {
        packedBits.withUnsafeBufferPointer { bytes in
            for (byteIndex, byte) in bytes.enumerated() where byte != 0 {
                var remaining = byte
                while remaining != 0 {
                    body(byteIndex << 3 | remaining.trailingZeroBitCount)
                    remaining &= remaining - 1
                }
            }
        }
    }

    /// Calls `body` with every pruned index, in increasing order.
    func forEachPruned(_ body: (Int) -> Void) {
        let count = elementCount
        packedBits.withUnsafeBufferPointer { bytes in
            for (byteIndex, byte) in bytes.enumerated() where byte != 0xFF {
                let valid = min(count - byteIndex << 3, 8)
                var remaining = ~byte & UInt8(truncatingIfNeeded: (1 << valid) - 1)
                while remaining != 0 {
                    body(byteIndex << 3 | remaining.trailingZeroBitCount)
                    remaining &= remaining - 1
                }
            }
        }
    }

    /// Why the bits break `pattern`, or nil.
    func patternViolation() -> String? {
        guard case .nOfM(let n, let m) = pattern else { return nil }
        let columns = shape[1]
        guard columns % m == 0 else { return "a \(pattern) mask needs rows a multiple of \(m) long, got \(shape)" }
        // Groups never straddle rows, so a group is `index / m`.
        var group = -1
        var kept = 0
        var violating: Int?
        forEachKept { index in
            if index / m != group {
                group = index / m
                kept = 0
            }
            kept += 1
            if kept > n, violating == nil { violating = group }
        }
        guard let violating else { return nil }
        let start = violating * m
        return "the \(pattern) mask keeps more than \(n) of the \(m) elements at row \(start / columns), column \(start % columns)"
    }

    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            count = product
        }
        return count
    }
}

/// Sparse storage of masked weights in `model.safetensors`. A masked weight
/// `W` is not stored dense but as two tensors: `W.sparse_mask` (U8, the
/// packed mask bits) and `W.sparse_values` (F32, the kept values in
/// row-major order, bit for bit). The `__metadata__` key `squeeze.sparse`
/// holds a JSON object naming each masked weight with its pattern and shape:
/// `{"bert.encoder.layer.0.intermediate.dense.weight": {"pattern": "2:4",
/// "shape": [1536, 384]}}`. The same bitmask serves N:M patterns: at 2:4 it
/// costs one bit per element, as 2-bit in-group indices would, and the
/// pattern is checked on load.
public enum SparseStorage {
    public static let metadataKey = "squeeze.sparse"
    public static let maskSuffix = ".sparse_mask"
    public static let valuesSuffix = ".sparse_values"

    /// The kept values of `weight` under `mask` (bit patterns preserved).
    static func keptValues(_ weight: Tensor, mask: WeightMask) -> [Float] {
        weight.contiguous().withUnsafeFloats { values in
            var kept: [Float] = []
            kept.reserveCapacity(mask.keptCount)
            mask.forEachKept { kept.append(values[$0]) }
            return kept
        }
    }

    /// The dense weight: kept values in place, +0.0 elsewhere.
    static func dense(mask: WeightMask, values: [Float]) -> Tensor {
        var result = Tensor(zeros: mask.shape)
        result.withUnsafeMutableFloats { target in
            values.withUnsafeBufferPointer { source in
                var next = 0
                mask.forEachKept { index in
                    target[index] = source[next]
                    next += 1
                }
            }
        }
        return result
    }

    /// The `squeeze.sparse` metadata value for masks by stored weight name.
    static func metadataValue(_ masks: [(name: String, mask: WeightMask)]) -> String {
        let members = masks.sorted { Safetensors.utf8Less($0.name, $1.name) }.map { entry in
            let shape = entry.mask.shape.map(String.init).joined(separator: ",")
            return "\(JSONText.string(entry.name)):{\"pattern\":\(JSONText.string(entry.mask.pattern.description)),\"shape\":[\(shape)]}"
        }
        return "{" + members.joined(separator: ",") + "}"
    }
}

extension SafetensorsFile {
    /// The masked weights this file stores sparsely, by stored name (e.g.
    /// `bert.encoder.layer.0.intermediate.dense.weight`), each with its mask;
    /// empty for a dense file. Everything read is checked: the metadata's
    /// shape and pattern, the mask's size and padding bits, the pattern, the
    /// values' dtype and count against the kept bits.
    public func sparseMasks() throws(ModelFileError) -> [String: WeightMask] {
        guard let text = metadata[SparseStorage.metadataKey] else { return [:] }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw ModelFileError(file: path, "`\(SparseStorage.metadataKey)` metadata is not a JSON object")
            }
            object = parsed
        } catch let error as ModelFileError {
            throw error
        } catch {
            throw ModelFileError(file: path, "`\(SparseStorage.metadataKey)` metadata is not valid JSON")
        }
        var masks: [String: WeightMask] = [:]
        for (name, value) in object.sorted(by: { $0.key < $1.key }) {
            guard let entry = value as? [String: Any], let patternText = entry["pattern"] as? String,
                let pattern = SparsityPattern(patternText), let shapeValues = entry["shape"] as? [Any]
            else {
                throw ModelFileError(file: path, "sparse weight `\(name)`: metadata needs a `pattern` (unstructured or N:M) and a `shape`")
            }
            let shape = shapeValues.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
            guard shape.count == shapeValues.count, shape.count == 2, shape.allSatisfy({ $0 >= 0 }) else {
                throw ModelFileError(file: path, "sparse weight `\(name)`: shape must be two non-negative integers")
            }
            guard entries[name] == nil else {
                throw ModelFileError(file: path, "weight `\(name)` is stored both dense and sparse")
            }
            let maskEntry = try sparsePart(name + SparseStorage.maskSuffix, dtype: .u8, of: name)
            let bits = try tensor(maskEntry.name).withUnsafeElements(UInt8.self) { Array($0) }
            masks[name] = try WeightMask(shape: shape, pattern: pattern, packedBits: bits, file: path + ": `\(name)`")
            let valuesEntry = try sparsePart(name + SparseStorage.valuesSuffix, dtype: .f32, of: name)
            guard let mask = masks[name], valuesEntry.elementCount == mask.keptCount else {
                throw ModelFileError(
                    file: path, "sparse weight `\(name)`: the mask keeps \(masks[name]?.keptCount ?? 0) elements, but \(valuesEntry.elementCount) values are stored")
            }
        }
        return masks
    }

    /// The dense weight stored sparsely as `name`, whose mask `sparseMasks` read.
    public func sparseTensor(_ name: String, mask: WeightMask) throws(ModelFileError) -> Tensor {
        let values = try floats(name + SparseStorage.valuesSuffix)
        guard values.count == mask.keptCount else {
            throw ModelFileError(file: path, "sparse weight `\(name)`: \(values.count) values for \(mask.keptCount) kept elements")
        }
        return SparseStorage.dense(mask: mask, values: values)
    }

    private func sparsePart(_ part: String, dtype: SafetensorsDType, of name: String) throws(ModelFileError) -> SafetensorsEntry {
        guard let entry = entries[part] else {
            throw ModelFileError(file: path, "sparse weight `\(name)` has no `\(part)` tensor")
        }
        guard entry.dtype == dtype, entry.shape.count == 1 else {
            throw ModelFileError(file: path, "`\(part)` must be a 1-D \(dtype.rawValue) tensor, got \(entry.dtype.rawValue) \(entry.shape)")
        }
        return entry
    }
}
