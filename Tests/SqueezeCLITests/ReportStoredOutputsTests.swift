import Foundation
@testable import squeeze
import SqueezeEngine
import SqueezeStore
import Testing

/// `squeeze report` reads a generate stage's report.json by the digest its
/// record gives, from the run's content store.
@Suite struct ReportStoredOutputsTests {
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "squeeze-report-outputs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func readsByDigestFromTheRecordsStoreThenTheOther() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = try ContentStore(root: root + "/cache")
        let staged = root + "/report.json"
        let bytes = Data(#"{"fp32": {"samples": []}}"#.utf8)
        try bytes.write(to: URL(fileURLWithPath: staged))
        var stage = StageRecord(id: "generate", uses: "eval/generate", status: .ran)
        stage.outputs["report"] = try store.ingest(staged)

        let missing = root + "/no-cache"
        let outputs = StoredOutputs(stores: [missing, root + "/cache"])
        #expect(try outputs.read(stage, "report") == bytes)
        #expect(!FileManager.default.fileExists(atPath: missing), "a store that does not exist is not created")
        #expect(throws: StoredOutputs.Unavailable.self) { try outputs.read(stage, "model") }

        let onlyMissing = StoredOutputs(stores: [missing])
        #expect {
            try onlyMissing.read(stage, "report")
        } throws: { error in
            "\(error)".contains("no cache at \(missing)")
        }
    }

    @Test func changedBytesAreNotShown() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let reference: ArtifactRef
        do {
            let store = try ContentStore(root: root + "/cache")
            try Data(#"{"a": 1}"#.utf8).write(to: URL(fileURLWithPath: root + "/report.json"))
            reference = try store.ingest(root + "/report.json")
            let object = try store.path(for: reference)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: object)
            try Data(#"{"b": 2}"#.utf8).write(to: URL(fileURLWithPath: object))
        }
        var stage = StageRecord(id: "generate", uses: "eval/generate", status: .ran)
        stage.outputs["report"] = reference
        #expect {
            try StoredOutputs(stores: [root + "/cache"]).read(stage, "report")
        } throws: { error in
            "\(error)".contains("does not match digest")
        }
    }
}
