import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// A weight-only decoder (`quantize/weight-only`, `quantize/gptq`) in the
/// `compressed-tensors` format that `transformers` (with the
/// `compressed-tensors` package) and vLLM load: `quantization_config` with
/// `quant_method: compressed-tensors`, `format: pack-quantized`, one config
/// group of int weights (`strategy: group`, Squeeze's group size and
/// symmetry) targeting `Linear` and ignoring the Linears Squeeze kept in f32.
///
/// Each quantized Linear `<m>` is stored as compressed-tensors' packer
/// writes it (`compressors/pack_quantized/helpers.py`, 0.20):
/// - `<m>.weight_packed` I32 `[out, ⌈in·b/32⌉]`: each row's codes, offset to
///   unsigned (`q + 2^(b−1)`), element `j` at bit `j·b` of the row's
///   little-endian bit stream of 32-bit words;
/// - `<m>.weight_scale` F32 `[out, in/group]`: Squeeze's own float32 scales;
/// - `<m>.weight_zero_point` I32 `[⌈out·b/32⌉, in/group]` (asymmetric only):
///   the signed zero points, offset and packed the same way along the
///   output axis;
/// - `<m>.weight_shape` I64 `[2]`.
///
/// compressed-tensors dequantizes `(float(q) − float(z)) · s` in the
/// scale's dtype; with float32 scales that is exactly Squeeze's
/// `s · Float(q − z)` (the integer difference is exact in float32), so the
/// dequantized weights are bit-identical. Load with `dtype=torch.float32`:
/// compressed-tensors gives the scales the model's dtype, and bf16/f16 would
/// round them. GPTQ's 3-bit codes are stored in the 4-bit container
/// (`num_bits: 4`), as in Squeeze's own format.
enum CompressedTensorsExport {
    /// A weight-only model's parameters as Hugging Face names them, and how
    /// its config and class are written.
    struct Source {
        /// Every parameter (HF name) with its Squeeze value, in model order.
        var parameters: [(name: String, value: InferenceValue)]
        /// Squeeze module name → HF module name.
        var moduleName: (String) -> String
        var quantization: ModelQuantization
        /// The float model's `config.json` (no `quantization` section).
        var config: Data
        var architecture: String
        var autoClass: String
    }

    static func write(_ model: QuantizedDecoderModel, into directory: inout ExportDirectory) throws(HFExportError) -> HFCheckpointExport.Written {
        let parameters = model.weights.map { name, value in (name: name, value: value) }.elements
        return try write(
            Source(
                parameters: parameters, moduleName: { $0 }, quantization: model.quantization, config: model.config.jsonData(),
                architecture: DecoderHFExport.architecture(model.config.family), autoClass: "AutoModelForCausalLM"),
            into: &directory)
    }

    static func write(_ source: Source, into directory: inout ExportDirectory) throws(HFExportError) -> HFCheckpointExport.Written {
        let scheme = source.quantization.weights
        let bits = scheme.bits
        guard let groupSize = scheme.groupSize else {
            throw .refused("the weight-only model has no group size; compressed-tensors' group strategy needs one")
        }
        var tensors: [SafetensorsWriter.RawTensor] = []
        var quantized: [String] = []
        var linears: [String] = []
        var storedBytes = 0
        var storedDequantized: [String] = []
        var zeroWeights = 0, allWeights = 0
        var everyModuleTwoFour = true
        for (name, value) in source.parameters {
            guard case .linear(let linear) = value else {
                tensors.append(HFCheckpointExport.raw(name, value.tensor))
                continue
            }
            let module = source.moduleName(linear.module)
            linears.append(module)
            guard case .weightOnly(let weightOnly) = linear.kernel else {
                tensors.append(HFCheckpointExport.raw(name, value.tensor))
                continue
            }
            let packed = weightOnly.weights
            if !scheme.symmetric, CompressedTensorsPacking.wordCount(packed.outputCount, bits: bits) == 1, packed.groupsPerRow > 1 {
                // compressed-tensors 0.20.1 cannot unpack such a zero point (its one-word column, transposed, is a
                // size-1 view `unpack_from_int32` cannot reinterpret): the module is stored as its dequantized
                // float32 weight, the very values Squeeze computes with, and listed in `ignore`.
                tensors.append(HFCheckpointExport.raw(name, packed.dequantized()))
                storedDequantized.append(module)
                continue
            }
            quantized.append(module)
            let codes = packed.codes.contiguous()
            let codeValues: [Int8] = codes.withUnsafeElements(Int8.self) { Array($0) }
            let rows = packed.outputCount, columns = packed.inputCount, groups = packed.groupsPerRow
            let zeroCodes = packed.zeroPoints
            let sparsity = TwoFourCount.of(codeValues, columns: columns) { index in
                Int32(zeroCodes?[index / columns * groups + index % columns / packed.groupSize] ?? 0)
            }
            zeroWeights += sparsity.zeros
            allWeights += codeValues.count
            everyModuleTwoFour = everyModuleTwoFour && sparsity.isTwoFour
            let words = CompressedTensorsPacking.wordCount(columns, bits: bits)
            var rowMajor: [Int32] = []
            rowMajor.reserveCapacity(rows * words)
            for row in 0..<rows {
                rowMajor += CompressedTensorsPacking.pack(codeValues[(row * columns)..<((row + 1) * columns)], bits: bits)
            }
            tensors.append((module + ".weight_packed", .i32, [rows, words], littleEndian(rowMajor)))
            tensors.append((module + ".weight_scale", .f32, [rows, groups], Float.littleEndianBytes(packed.scales)))
            if !scheme.symmetric {
                let zeros = packed.zeroPoints ?? [Int32](repeating: 0, count: rows * groups)
                let zeroWords = CompressedTensorsPacking.wordCount(rows, bits: bits)
                var columnsPacked = [[Int32]](repeating: [], count: groups)
                for group in 0..<groups {
                    let column = (0..<rows).map { Int8(clamping: zeros[$0 * groups + group]) }
                    columnsPacked[group] = CompressedTensorsPacking.pack(column[...], bits: bits)
                }
                var stored = [Int32](repeating: 0, count: zeroWords * groups)
                for word in 0..<zeroWords {
                    for group in 0..<groups { stored[word * groups + group] = columnsPacked[group][word] }
                }
                tensors.append((module + ".weight_zero_point", .i32, [zeroWords, groups], littleEndian(stored)))
                storedBytes += zeroWords * groups * 4
            }
            tensors.append((module + ".weight_shape", .i64, [2], littleEndian([Int64(rows), Int64(columns)])))
            storedBytes += rows * words * 4 + rows * groups * 4
        }
        try HFCheckpointExport.writeWeights(tensors, into: &directory)

        let ignore = Array(Set(linears).subtracting(quantized)).sorted()
        let weightArguments: [String: Value] = [
            "num_bits": .int(bits), "type": .string("int"), "symmetric": .bool(scheme.symmetric),
            "strategy": .string("group"), "group_size": .int(groupSize), "dynamic": .bool(false),
        ]
        var section: [String: Value] = [
            "quant_method": .string("compressed-tensors"),
            "format": .string("pack-quantized"),
            "quantization_status": .string("compressed"),
            "config_groups": .object([
                "group_0": .object([
                    "targets": .array([.string("Linear")]),
                    "weights": .object(weightArguments),
                    "input_activations": .null,
                    "output_activations": .null,
                    "format": .string("pack-quantized"),
                ])
            ]),
            "ignore": .array(ignore.map(Value.string)),
            "kv_cache_scheme": .null,
            "sparsity_config": .object([:]),
        ]
        let twoFour = everyModuleTwoFour && !quantized.isEmpty
        let globalSparsity = allWeights == 0 ? 0 : (Double(zeroWeights) / Double(allWeights) * 1e6).rounded() / 1e6
        if twoFour {
            // Declared, not compressed: the weights stay pack-quantized (a dense sparsity format), which
            // transformers 5.25 + compressed-tensors 0.20.1 load; a runtime with 2:4 kernels can use the structure.
            section["sparsity_config"] = .object([
                "format": .string("dense"), "sparsity_structure": .string("2:4"), "targets": .array([.string("Linear")]),
                "ignore": .array(ignore.map(Value.string)), "global_sparsity": .double(globalSparsity),
            ])
        }
        let config: Value
        do {
            guard case .object(var members) = try Value(json: Array(source.config)) else {
                throw HFExportError.refused("the decoder's config did not encode as a JSON object")
            }
            members["quantization_config"] = .object(section)
            config = .object(members)
        } catch let error as HFExportError {
            throw error
        } catch {
            throw .refused("the decoder's config did not encode: \(error)")
        }
        try HFCheckpointExport.wrapping { () throws(ModelFileError) in
            try directory.write(ModelArtifact.configFileName, Data(config.prettyJSON.utf8))
        }
        var weightDetails = weightArguments
        if let codeBits = scheme.codeBits {
            weightDetails["code_bits"] = .int(codeBits)
            weightDetails["code_range"] = .array(scheme.codeRange.map(Value.int))
        }
        var details: [String: Value] = [
            "architecture": .string(source.architecture),
            "auto_class": .string(source.autoClass),
            "quantization_format": .string("compressed-tensors pack-quantized"),
            "weights": .object(weightDetails),
            "scale_dtype": .string("float32"),
            "quantized_modules": .int(quantized.count),
            "ignored_modules": .array(ignore.map(Value.string)),
            "quantized_bytes": .int(storedBytes),
            "load": .string("\(source.autoClass).from_pretrained(path, dtype=torch.float32); needs the compressed-tensors package"),
        ]
        details["zero_weights"] = .object([
            "fraction": .double(globalSparsity),
            "two_four": .bool(twoFour),
            "note": .string(twoFour
                ? "every quantized module is 2:4 sparse (at most 2 non-zero codes in every 4 consecutive inputs): declared as sparsity_config 2:4, format dense"
                : "the quantized modules are not all 2:4 sparse; no sparsity_config"),
        ])
        if !storedDequantized.isEmpty {
            details["stored_dequantized"] = .object([
                "modules": .array(storedDequantized.map(Value.string)),
                "reason": .string("""
                    asymmetric modules with at most \(32 / bits) output rows and several groups are stored as their \
                    dequantized float32 weights (the same values), because compressed-tensors 0.20.1 cannot unpack their zero points
                    """),
            ])
        }
        let guarantee = """
            compressed-tensors dequantizes every weight to exactly the float32 values Squeeze's weight-only kernel uses \
            ((q − z)·s with Squeeze's float32 scales; tested bit-identical), so transformers' logits (float32, eval) equal \
            Squeeze's weight-only forward up to float summation order (tested ≤ 1e-4)
            """
        return HFCheckpointExport.Written(sourceKind: "weight_only", details: details, guarantee: guarantee)
    }

    private static func littleEndian<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    }
}

/// Zero weights of a quantized matrix (code equal to its zero point, which
/// dequantizes to exactly 0) and whether every 4 consecutive inputs of a row
/// hold at most 2 non-zeros.
enum TwoFourCount {
    static func of(_ codes: [Int8], columns: Int, zeroPoint: (Int) -> Int32) -> (zeros: Int, isTwoFour: Bool) {
        var zeros = 0
        var twoFour = columns % 4 == 0
        var nonZeroInGroup = 0
        for (index, code) in codes.enumerated() {
            if index % 4 == 0 { nonZeroInGroup = 0 }
            if Int32(code) == zeroPoint(index) {
                zeros += 1
            } else {
                nonZeroInGroup += 1
                if nonZeroInGroup > 2 { twoFour = false }
            }
        }
        return (zeros, twoFour)
    }
}

/// compressed-tensors' dense packing of signed b-bit codes into int32 words
/// (`pack_to_int32`): each code offset by 2^(b−1) to unsigned, code `j` at
/// bits `j·b …` of the little-endian bit stream, a code may straddle two
/// words, `⌈n·b/32⌉` words per packed vector.
enum CompressedTensorsPacking {
    static func wordCount(_ count: Int, bits: Int) -> Int { (count * bits + 31) / 32 }

    static func pack(_ codes: ArraySlice<Int8>, bits: Int) -> [Int32] {
        var words = [UInt32](repeating: 0, count: wordCount(codes.count, bits: bits))
        let offset = Int(1) << (bits - 1)
        let mask = (UInt64(1) << UInt64(bits)) - 1
        for (position, code) in codes.enumerated() {
            let value = UInt64(Int(code) + offset) & mask
            let bit = position * bits
            let shifted = value << UInt64(bit % 32)
            words[bit / 32] |= UInt32(truncatingIfNeeded: shifted)
            if bit % 32 + bits > 32 { words[bit / 32 + 1] |= UInt32(truncatingIfNeeded: shifted >> 32) }
        }
        return words.map { Int32(bitPattern: $0) }
    }
}
