import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

@Suite struct SparseStorageTests {
    static func bits(_ tensor: Tensor) -> [UInt32] { tensor.contiguous().floats.map(\.bitPattern) }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// TinyBert with a 2:4 mask on every encoder weight, an unstructured one
    /// on the classifier, and kept elements set to +0.0 and -0.0.
    static func maskedModel() throws -> BertModel {
        var model = try TinyBert.model(seed: 9, initializerRange: 0.5).maskedNofM()
        let name = "encoder.layer.0.attention.self.query"
        var weight = try model.linearWeight(name).contiguous()
        let mask = try #require(model.masks[name + ".weight"])
        let kept = (0..<mask.elementCount).filter(mask.isKept)
        weight.withUnsafeMutableFloats { values in
            values[kept[0]] = -0.0
            values[kept[1]] = 0.0
        }
        try model.setLinearWeight(name, to: weight)
        var keep = [Bool](repeating: true, count: 3 * 8)
        keep[0] = false
        keep[5] = false
        try model.setMask(try WeightMask(shape: [3, 8], pattern: .unstructured, keep: keep), forParameter: "classifier.weight")
        return model
    }

    @Test func aMaskedModelRoundTripsBitForBitAndItsFileShrinks() throws {
        let model = try Self.maskedModel()
        #expect(model.masks.count == 13)
        #expect(model.keepsItsMasks)
        let directory = try TempDir()
        try model.save(toDirectory: directory.file("sparse"))
        let loaded = try BertModel(directory: directory.file("sparse"))
        #expect(loaded.masks == model.masks)
        #expect(loaded.weights.names == model.weights.names)
        for (original, reloaded) in zip(model.weights.elements, loaded.weights.elements) {
            #expect(Self.bits(original) == Self.bits(reloaded))
        }
        let query = try loaded.linearWeight("encoder.layer.0.attention.self.query").floats
        #expect(query.contains { $0 == 0 && $0.sign == .minus }, "a kept -0.0 stays -0.0")

        // The same weights without masks: a dense file, larger.
        let dense = try BertModel(config: model.config, weights: model.weights, pooling: model.pooling)
        try dense.save(toDirectory: directory.file("dense"))
        // The tiny model's header (names, metadata) outweighs what it saves;
        // the tensor data shrinks by half the masked weights, less the bitmasks.
        let file = try SafetensorsFile(path: directory.file("sparse/model.safetensors"))
        let denseFile = try SafetensorsFile(path: directory.file("dense/model.safetensors"))
        let dataBytes = { (file: SafetensorsFile) in file.entries.values.reduce(0) { $0 + $1.byteRange.count } }
        let maskedElements = model.masks.values.reduce(0) { $0 + $1.elementCount }
        let keptElements = model.masks.values.reduce(0) { $0 + $1.keptCount }
        let bitmaskBytes = model.masks.values.reduce(0) { $0 + $1.packedBits.count }
        #expect(dataBytes(denseFile) - dataBytes(file) == (maskedElements - keptElements) * 4 - bitmaskBytes)
        #expect(file.entries["bert.encoder.layer.0.intermediate.dense.weight"] == nil)
        #expect(file.entries["bert.encoder.layer.0.intermediate.dense.weight.sparse_values"]?.shape == [8 * 16 / 2])
        #expect(file.entries["bert.encoder.layer.0.intermediate.dense.weight.sparse_mask"]?.shape == [16])
        #expect(file.metadata[SparseStorage.metadataKey]?.contains(#""bert.encoder.layer.1.output.dense.weight":{"pattern":"2:4","shape":[8,12]}"#) == true)
        // Saving is deterministic.
        try loaded.save(toDirectory: directory.file("again"))
        #expect(FileManager.default.contents(atPath: directory.file("again/model.safetensors"))
            == FileManager.default.contents(atPath: directory.file("sparse/model.safetensors")))
    }

    @Test func theFileShrinksWithSparsity() throws {
        let directory = try TempDir()
        var generator = SeededGenerator(seed: 4)
        let weight = Tensor.normal(shape: [64, 64], standardDeviation: 1, generator: &generator)
        var sizes: [Int] = []
        for keptShare in [1.0, 0.5, 0.1] {
            let values = weight.floats
            let keep = values.indices.map { Double($0 % 10) < keptShare * 10 }
            let mask = try WeightMask(shape: [64, 64], pattern: .unstructured, keep: keep)
            let path = directory.file("w\(keptShare).safetensors")
            try SafetensorsWriter.write(tensors: [("w", mask.apply(to: weight))], masks: ["w": mask], to: path)
            sizes.append(Self.fileSize(path))
            let file = try SafetensorsFile(path: path)
            let masks = try file.sparseMasks()
            #expect(try Self.bits(file.sparseTensor("w", mask: try #require(masks["w"]))) == Self.bits(mask.apply(to: weight)))
        }
        // Dense f32 is 16 KiB; the bitmask adds 512 bytes: 10% kept is 1.6 KiB of values.
        #expect(sizes[0] > 64 * 64 * 4 && sizes[1] < sizes[0] / 2 + 1024 && sizes[2] < sizes[0] / 6, "\(sizes)")
    }

    @Test func theMaskIsTheTruthPrunedPositionsArePositiveZero() throws {
        let weight = Tensor(shape: [1, 4], floats: [1.5, -0.0, 2.5, -3.5])
        let mask = try WeightMask(shape: [1, 4], pattern: .nOfM(n: 2, m: 4), keep: [true, false, true, false])
        #expect(Self.bits(mask.apply(to: weight)) == [Float(1.5), 0, 2.5, 0].map(\.bitPattern))
        var model = try TinyBert.model()
        let name = "encoder.layer.0.intermediate.dense.weight"
        try model.setMask(try WeightMask(shape: [16, 8], pattern: .unstructured, keep: (0..<128).map { $0 % 3 == 0 }), forParameter: name)
        let values = model.weights.layers[0].intermediate.weight.floats
        #expect(values.indices.allSatisfy { $0 % 3 == 0 || values[$0].bitPattern == 0 })

        #expect(throws: ModelFileError.self) {
            try model.setMask(try WeightMask(shape: [8, 16], pattern: .unstructured, keep: [Bool](repeating: true, count: 128)), forParameter: name)
        }
        #expect(throws: ModelFileError.self) {
            try model.setMask(try WeightMask(shape: [16, 8], pattern: .unstructured, keep: [Bool](repeating: true, count: 128)), forParameter: "nope")
        }
        #expect(throws: ModelFileError.self) { try WeightMask(shape: [1, 4], pattern: .nOfM(n: 2, m: 4), keep: [true, true, true, false]) }
        #expect(throws: ModelFileError.self) { try WeightMask(shape: [1, 6], pattern: .nOfM(n: 2, m: 4), keep: [Bool](repeating: false, count: 6)) }
        #expect(SparsityPattern("2:4") == .nOfM(n: 2, m: 4) && SparsityPattern("unstructured") == .unstructured)
        #expect(SparsityPattern("4:2") == nil && SparsityPattern("0:4") == nil && SparsityPattern("2:") == nil)
    }

    /// A one-weight file `w` [2, 8] stored sparsely with these parts and metadata.
    static func writeSparse(
        _ path: String, maskBytes: [UInt8], values: [Float], valuesDType: SafetensorsDType = .f32,
        metadata: String = #"{"w":{"pattern":"2:4","shape":[2,8]}}"#, extra: [SafetensorsWriter.RawTensor] = []
    ) throws {
        let valueBytes = values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
        let valueShape = valuesDType == .f32 ? [values.count] : [valueBytes.count / valuesDType.byteSize]
        try SafetensorsWriter.write(
            [
                (name: "w.sparse_mask", dtype: .u8, shape: [maskBytes.count], bytes: maskBytes),
                (name: "w.sparse_values", dtype: valuesDType, shape: valueShape, bytes: valueBytes),
            ] + extra,
            metadata: [SparseStorage.metadataKey: metadata], to: path)
    }

    @Test func corruptSparseWeightsAreModelFileErrors() throws {
        let directory = try TempDir()
        // 2:4 over [2, 8]: bits 0,1 | 4,6 | 8,11 | 13,14 kept.
        let good: [UInt8] = [0b0101_0011, 0b0110_1001]
        let values: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        try Self.writeSparse(directory.file("good"), maskBytes: good, values: values)
        let file = try SafetensorsFile(path: directory.file("good"))
        let mask = try #require(try file.sparseMasks()["w"])
        #expect(try file.sparseTensor("w", mask: mask).floats == [1, 2, 0, 0, 3, 0, 4, 0, 5, 0, 0, 6, 0, 7, 8, 0])

        let cases: [(String, () throws -> Void)] = [
            ("fewer values than kept bits", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: Array(values.prefix(7))) }),
            ("more values than kept bits", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values + [9]) }),
            ("a short mask", { try Self.writeSparse(directory.file("a"), maskBytes: [good[0]], values: Array(values.prefix(4))) }),
            ("a long mask", { try Self.writeSparse(directory.file("a"), maskBytes: good + [0], values: values) }),
            ("3 kept in a 2:4 group", { try Self.writeSparse(directory.file("a"), maskBytes: [0b0101_0111, good[1]], values: values + [9]) }),
            ("values as F16", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: Array(values.prefix(4)), valuesDType: .f16) }),
            ("no pattern", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"w":{"shape":[2,8]}}"#) }),
            ("a bad pattern", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"w":{"pattern":"5:4","shape":[2,8]}}"#) }),
            ("a 3-D shape", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"w":{"pattern":"2:4","shape":[2,8,1]}}"#) }),
            ("a negative shape", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"w":{"pattern":"2:4","shape":[-2,8]}}"#) }),
            ("an overflowing shape", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"w":{"pattern":"unstructured","shape":[9223372036854775807,4]}}"#) }),
            ("metadata not JSON", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: "{w") }),
            ("metadata not an object", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: "[1]") }),
            ("a missing part", { try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, metadata: #"{"v":{"pattern":"2:4","shape":[2,8]}}"#) }),
            ("dense and sparse", {
                try Self.writeSparse(directory.file("a"), maskBytes: good, values: values, extra: [(name: "w", dtype: .f32, shape: [1], bytes: [0, 0, 0, 0])])
            }),
        ]
        for (what, write) in cases {
            try write()
            #expect(throws: ModelFileError.self, "\(what)") { try SafetensorsFile(path: directory.file("a")).sparseMasks() }
        }
        // Padding bits set past the last element: [1, 12] has 4 padding bits.
        try Self.writeSparse(
            directory.file("a"), maskBytes: [0xFF, 0x1F], values: [Float](repeating: 1, count: 13),
            metadata: #"{"w":{"pattern":"unstructured","shape":[1,12]}}"#)
        #expect(throws: ModelFileError.self) { try SafetensorsFile(path: directory.file("a")).sparseMasks() }
    }

    @Test func truncatedOrInconsistentSparseModelsFailToLoadWithoutACrash() throws {
        let model = try Self.maskedModel()
        let directory = try TempDir()
        try model.save(toDirectory: directory.file("m"))
        let path = directory.file("m/model.safetensors")
        let bytes = try #require(FileManager.default.contents(atPath: path))
        for cut in [bytes.count - 1, bytes.count / 2, 100, 9] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
            #expect(throws: ModelFileError.self, "cut at \(cut)") { try BertModel(directory: directory.file("m")) }
        }
        // A sparse weight whose shape disagrees with the config's.
        let name = "bert.encoder.layer.1.attention.self.query.weight"
        var tensors = zip(model.weights.names, model.weights.elements).map { (name: $0.hasPrefix("classifier.") ? $0 : "bert." + $0, tensor: $1) }
        let index = try #require(tensors.firstIndex { $0.name == name })
        tensors[index].tensor = Tensor(zeros: [8, 8])
        let mask = try WeightMask(shape: [8, 8], pattern: .nOfM(n: 2, m: 4), keep: (0..<64).map { $0 % 2 == 0 })
        try SafetensorsWriter.write(tensors: tensors, masks: [name: mask], to: path)
        #expect(throws: ModelFileError.self) { try BertModel(directory: directory.file("m")) }
    }
}
