import Foundation
import SqueezeExport
import SqueezeModels
import SqueezeSupport
import Testing

@Suite struct ExportDirectoryTests {
    static func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("export-dir-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func refusesANonEmptyDirectoryAndAFile() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Data("x".utf8).write(to: URL(fileURLWithPath: root + "/stray.txt"))
        #expect(throws: ModelFileError.self) { try ExportDirectory(path: root) }
        #expect(throws: ModelFileError.self) { try ExportDirectory(path: root + "/stray.txt") }
        do {
            _ = try ExportDirectory(path: root)
        } catch {
            #expect(error.description.contains("not empty"))
        }
    }

    @Test func manifestListsEveryFileWithItsDigest() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var directory = try ExportDirectory(path: root + "/out")
        try directory.write("model.onnx", Data([1, 2, 3]))
        try directory.write("config.json", Data("{}".utf8))
        #expect(throws: ModelFileError.self) { try directory.write("../escape", Data()) }
        let source = ExportManifest.Source(digest: String(repeating: "a", count: 64), format: "squeeze.model/1", architecture: "bert", kind: "dense")
        try directory.finish(target: "onnx", source: source, details: ["opset": .int(17)], guarantee: "exact")
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/out/" + ExportManifest.fileName))
        let manifest = try SqueezeJSON.decode(ExportManifest.self, from: data)
        #expect(manifest.format == ExportManifest.currentFormat)
        #expect(manifest.files["model.onnx"] == Hashing.sha256(Data([1, 2, 3])).hex)
        #expect(Set(manifest.files.keys) == ["model.onnx", "config.json"])
        #expect(manifest.source == source)
        #expect(!FileManager.default.fileExists(atPath: root + "/escape"))
    }
}
