import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import Testing

@Suite struct TextClassificationReaderTests {
    private func file(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        let path = dir.file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func rows(_ result: (rows: [TextClassificationRow], bad: [BadRow])) -> [String] {
        result.rows.map { "\($0.line):\($0.label):\($0.text)" }
    }

    @Test func tsvKeepsQuotesAndHandlesCRLFBOMAndBlankLines() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.tsv", "\u{FEFF}sentence\tlabel\r\nit 's \"great\" \t1\r\n\r\nbad , bad\t 0 \n")
        let result = try TextClassificationReader(format: .tsv).read(path)
        #expect(rows(result) == ["2:1:it 's \"great\" ", "4:0:bad , bad"])
        #expect(result.bad.isEmpty)
    }

    @Test func csvQuotingAndLineNumbers() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.csv", "id,text,label\n1,\"hello, world\",pos\n2,\"multi\nline \"\"quoted\"\"\",neg\n3,plain,pos\n")
        let reader = TextClassificationReader(format: .csv, textColumn: .name("text"), labelColumn: .name("label"))
        #expect(rows(try reader.read(path)) == ["2:pos:hello, world", "3:neg:multi\nline \"quoted\"", "5:pos:plain"])
        let open = try file(dir, "open.csv", "text,label\n\"never closed,1\n")
        #expect(throws: ModelFileError(file: open + ":2", "a quoted field is not closed before the end of the file")) {
            try reader.read(open)
        }
    }

    @Test func jsonlLabelsMayBeStringsOrIntegers() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.jsonl", #"""
            {"sentence": "fine", "label": 1}
            {"sentence": "meh", "label": "neutral", "extra": [1]}

            {"sentence": "bad", "label": 1.5}
            [1, 2]
            {"label": 0}
            not json
            """#)
        let result = try TextClassificationReader(format: .jsonl, onBadRows: .skip).read(path)
        #expect(rows(result) == ["1:1:fine", "2:neutral:meh"])
        #expect(result.bad.map(\.description) == [
            "\(path):4: `label` is not a string or an integer", "\(path):5: not a JSON object",
            "\(path):6: no key `sentence`", "\(path):7: not valid JSON",
        ])
        let strict = #expect(throws: ModelFileError.self) { try TextClassificationReader(format: .jsonl).read(path) }
        #expect(strict?.file == path + ":4")
        #expect(strict?.message == "`label` is not a string or an integer (use `on_bad_rows: skip` to leave such rows out)")
    }

    @Test func columnsByNumberWithoutAHeader() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.tsv", "1\tgood film\n0\tbad film\n")
        let reader = TextClassificationReader(format: .tsv, textColumn: .index(1), labelColumn: .index(0), hasHeader: false)
        #expect(rows(try reader.read(path)) == ["1:1:good film", "2:0:bad film"])
        let byName = #expect(throws: ModelFileError.self) { try TextClassificationReader(format: .tsv, hasHeader: false).read(path) }
        #expect(byName?.message.contains("without a header, columns are chosen by 0-based number") == true)
        let beyond = #expect(throws: ModelFileError.self) {
            try TextClassificationReader(format: .tsv, textColumn: .index(5), labelColumn: .index(0), hasHeader: false).read(path)
        }
        #expect(beyond?.file == path + ":1")
    }

    @Test func missingHeaderColumnListsTheColumns() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.tsv", "text\tlabel\nx\t1\n")
        #expect(throws: ModelFileError(file: path + ":1", "the header has no column `sentence` (columns: `text`, `label`)")) {
            try TextClassificationReader(format: .tsv).read(path)
        }
        #expect(throws: ModelFileError(file: path + ":1", "column #7 does not exist; the header has 2 columns")) {
            try TextClassificationReader(format: .tsv, textColumn: .index(7)).read(path)
        }
    }

    @Test func badRowsFailWithFileAndLineOrAreSkipped() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\tcolumns\n \t0\nno label\t\n\u{FF}\t1\nfine\t0\n")
        // Invalid UTF-8 cannot go through String; write the bytes directly.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        if let index = bytes.firstIndex(of: 0xC3), bytes[index + 1] == 0xBF { bytes.replaceSubrange(index...(index + 1), with: [0xFF]) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: ModelFileError.self) { try TextClassificationReader(format: .tsv).read(path) }
        #expect(error?.description == "\(path):3: 3 columns, expected 2 (use `on_bad_rows: skip` to leave such rows out)")
        let skipped = try TextClassificationReader(format: .tsv, onBadRows: .skip).read(path)
        #expect(rows(skipped) == ["2:1:ok", "7:0:fine"])
        #expect(skipped.bad.map { "\($0.line): \($0.reason)" } == ["3: 3 columns, expected 2", "4: empty text", "5: empty label", "6: not valid UTF-8"])
    }

    @Test func maxRowsCountsUsableRows() throws {
        let dir = try TempDir()
        let path = try file(dir, "a.tsv", "sentence\tlabel\na\t1\n\t1\nb\t0\nc\t1\n")
        let result = try TextClassificationReader(format: .tsv, onBadRows: .skip, maxRows: 2).read(path)
        #expect(rows(result) == ["2:1:a", "4:0:b"])
        #expect(result.bad.count == 1)
    }

    @Test func missingFileAndFormatInference() throws {
        let dir = try TempDir()
        #expect(throws: ModelFileError(file: dir.file("none.tsv"), "cannot be read")) {
            try TextClassificationReader(format: .tsv).read(dir.file("none.tsv"))
        }
        #expect(throws: ModelFileError(file: dir.path, "is a directory, not a file")) { try TextClassificationReader(format: .tsv).read(dir.path) }
        #expect(TextTableFormat.inferred(fromPath: "x/train.TSV") == .tsv)
        #expect(TextTableFormat.inferred(fromPath: "a.csv") == .csv)
        #expect(TextTableFormat.inferred(fromPath: "a.ndjson") == .jsonl)
        #expect(TextTableFormat.inferred(fromPath: "a.txt") == nil)
    }
}

@Suite struct TextClassificationDatasetTests {
    @Test func writesAndReadsAllSplits() throws {
        let dir = try TempDir()
        let texts = ["plain", "quote \" backslash \\ tab \t newline \n cr \r", "ünïcödé 日本 😀", "\u{1}\u{1F}\u{7F}"]
        let dataset = try TextClassificationDataset.write(
            to: dir.file("ds"), labels: ["neg", "pos"],
            splits: [("train", texts.enumerated().map { ($1, $0 % 2) }), ("test", []), ("dev", [("x", 1)])])
        #expect(dataset.labels == ["neg", "pos"])
        #expect(dataset.splitNames == ["train", "dev", "test"])
        #expect(dataset.splits["train"] == .init(file: "train.jsonl", rows: 4))
        let reopened = try TextClassificationDataset(directory: dir.file("ds"))
        #expect(reopened == dataset)
        let train = try reopened.split("train")
        #expect(train.map(\.text) == texts)
        #expect(train.map(\.label) == [0, 1, 0, 1])
        #expect(try reopened.split("test").isEmpty)
        #expect(try reopened.split("dev").map(\.label) == [1])
        let lines = try String(contentsOfFile: dir.file("ds/dev.jsonl"), encoding: .utf8)
        #expect(lines == "{\"text\":\"x\",\"label\":1}\n")
        let manifest = try String(contentsOfFile: dir.file("ds/manifest.json"), encoding: .utf8)
        #expect(manifest.contains("\"format\" : \"squeeze.text-classification/1\""))
        let missing = #expect(throws: ModelFileError.self) { try reopened.split("validation") }
        #expect(missing?.message == "no split `validation` (splits: `train`, `dev`, `test`)")
    }

    @Test func writerRejectsBadLabels() throws {
        let dir = try TempDir()
        #expect(throws: ModelFileError.self) {
            try TextClassificationDataset.write(to: dir.file("ds"), labels: ["a"], splits: [("train", [("x", 1)])])
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("ds/manifest.json")))
    }

    @Test func readerRejectsBrokenDatasets() throws {
        let dir = try TempDir()
        let path = dir.file("ds")
        let dataset = try TextClassificationDataset.write(to: path, labels: ["0", "1"], splits: [("train", [("a", 0), ("b", 1)])])
        let trainFile = path + "/train.jsonl"
        try Data("{\"text\":\"a\",\"label\":0}\n{\"text\":\"b\",\"label\":2}\n".utf8).write(to: URL(fileURLWithPath: trainFile))
        #expect(throws: ModelFileError(file: trainFile + ":2", "label 2 is not an index into the 2 labels")) { try dataset.split("train") }
        try Data("{\"text\":\"a\",\"label\":0}\n{\"text\":3,\"label\":1}\n".utf8).write(to: URL(fileURLWithPath: trainFile))
        #expect(throws: ModelFileError(file: trainFile + ":2", "not a JSON object with a string `text` and an integer `label`")) { try dataset.split("train") }
        try Data("{\"text\":\"a\",\"label\":0}\n".utf8).write(to: URL(fileURLWithPath: trainFile))
        #expect(throws: ModelFileError(file: trainFile, "has 1 rows, but manifest.json says 2")) { try dataset.split("train") }

        let manifest = path + "/manifest.json"
        func expectManifestError(_ json: String, _ fragment: String) throws {
            try Data(json.utf8).write(to: URL(fileURLWithPath: manifest))
            let error = #expect(throws: ModelFileError.self) { try TextClassificationDataset(directory: path) }
            #expect(error?.message.contains(fragment) == true, "\(error?.description ?? "no error")")
        }
        try expectManifestError("{}", "not a valid dataset manifest")
        try expectManifestError(#"{"format": "other", "labels": ["a"], "splits": {}}"#, "format is \"other\"")
        try expectManifestError(#"{"format": "squeeze.text-classification/1", "labels": ["a", "a"], "splits": {}}"#, "without duplicates")
        try expectManifestError(#"{"format": "squeeze.text-classification/1", "labels": ["a"], "splits": {"x": {"file": "../x", "rows": 1}}}"#, "invalid file name")
        try expectManifestError(#"{"format": "squeeze.text-classification/1", "labels": ["a"], "splits": {"x": {"file": "x.jsonl", "rows": 1}}}"#, "listed for split `x`")
        try FileManager.default.removeItem(atPath: manifest)
        try expectManifestError("", "not a valid dataset manifest")
    }
}

@Suite struct TextClassificationImportTests {
    private func file(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        let path = dir.file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func importsSplitsWithTrainLabels() throws {
        let dir = try TempDir()
        let train = try file(dir, "train.tsv", "sentence\tlabel\na\t10\nb\t2\nc\t2\nd\t1\n")
        let dev = try file(dir, "dev.tsv", "sentence\tlabel\ne\t2\n")
        let test = try file(dir, "test.tsv", "sentence\tlabel\nf\t10\ng\t1\n")
        let report = try TextClassificationImport(reader: TextClassificationReader(format: .tsv))
            .run(train: train, dev: dev, test: test, into: dir.file("out"))
        #expect(report.labels == ["1", "2", "10"])
        #expect(report.splits["train"] == .init(rows: 4, labelCounts: ["10": 1, "2": 2, "1": 1], badRows: 0))
        #expect(report.splits["dev"]?.rows == 1 && report.splits["test"]?.rows == 2)
        let dataset = try TextClassificationDataset(directory: dir.file("out"))
        #expect(try dataset.split("train").map(\.label) == [2, 1, 1, 0])
        #expect(try dataset.split("test").map(\.text) == ["f", "g"])
    }

    @Test func unknownDevLabelIsABadRow() throws {
        let dir = try TempDir()
        let train = try file(dir, "train.tsv", "sentence\tlabel\na\tpos\nb\tneg\n")
        let dev = try file(dir, "dev.tsv", "sentence\tlabel\nc\tpos\nd\tmaybe\n\t\tx\n")
        let error = #expect(throws: ModelFileError.self) {
            try TextClassificationImport(reader: TextClassificationReader(format: .tsv)).run(train: train, dev: dev, test: nil, into: dir.file("out"))
        }
        #expect(error?.file == dev + ":3")
        #expect(error?.message == "label `maybe` does not occur in the training data (labels: `neg`, `pos`) (use `on_bad_rows: skip` to leave such rows out)")
        let report = try TextClassificationImport(reader: TextClassificationReader(format: .tsv, onBadRows: .skip))
            .run(train: train, dev: dev, test: nil, into: dir.file("out"))
        #expect(report.splits["dev"] == .init(rows: 1, labelCounts: ["pos": 1], badRows: 2))
        #expect(report.badRowSamples == ["\(dev):3: label `maybe` does not occur in the training data (labels: `neg`, `pos`)", "\(dev):4: 3 columns, expected 2"])
        #expect(report.splits.keys.sorted() == ["dev", "train"])
    }

    @Test func devSplitFromTrainIsSeeded() throws {
        let dir = try TempDir()
        let lines = (0..<200).map { "s\($0)\t\($0 % 3)" }
        let train = try file(dir, "train.tsv", "sentence\tlabel\n" + lines.joined(separator: "\n") + "\n")
        func run(_ seed: UInt64, _ name: String) throws -> (train: [String], dev: [String]) {
            let report = try TextClassificationImport(reader: TextClassificationReader(format: .tsv), devFraction: 0.1, seed: seed)
                .run(train: train, dev: nil, test: nil, into: dir.file(name))
            return (try report.dataset.split("train").map(\.text), try report.dataset.split("dev").map(\.text))
        }
        let one = try run(7, "one")
        let two = try run(7, "two")
        let other = try run(8, "other")
        #expect(one.dev.count == 20 && one.train.count == 180)
        #expect(one == two)
        #expect(one.dev != other.dev)
        #expect(Set(one.train + one.dev).count == 200)
        // Both parts keep file order.
        #expect(one.dev == one.dev.sorted { Int($0.dropFirst()) ?? 0 < Int($1.dropFirst()) ?? 0 })
        let tiny = try file(dir, "tiny.tsv", "sentence\tlabel\na\t1\nb\t0\n")
        let report = try TextClassificationImport(reader: TextClassificationReader(format: .tsv), devFraction: 0.01)
            .run(train: tiny, dev: nil, test: nil, into: dir.file("tiny"))
        #expect(report.splits["train"]?.rows == 1 && report.splits["dev"]?.rows == 1)
        #expect(throws: ModelFileError.self) {
            try TextClassificationImport(reader: TextClassificationReader(format: .tsv), devFraction: 1.5)
                .run(train: tiny, dev: nil, test: nil, into: dir.file("bad"))
        }
        #expect(throws: ModelFileError.self) {
            try TextClassificationImport(reader: TextClassificationReader(format: .tsv), devFraction: 0.5)
                .run(train: tiny, dev: tiny, test: nil, into: dir.file("both"))
        }
    }

    @Test func emptyTrainIsAnError() throws {
        let dir = try TempDir()
        let train = try file(dir, "train.tsv", "sentence\tlabel\n \t1\n")
        #expect(throws: ModelFileError(file: train, "has no usable rows")) {
            try TextClassificationImport(reader: TextClassificationReader(format: .tsv, onBadRows: .skip))
                .run(train: train, dev: nil, test: nil, into: dir.file("out"))
        }
    }

    /// The real SST-2 files when present (skipped otherwise; a failure on CI).
    @Test func importsRealSST2() throws {
        let data = WordPieceParityTests.dataDirectory.appendingPathComponent("sst2")
        let paths = ["train", "dev", "test"].map { data.appendingPathComponent("\($0).tsv").path }
        guard paths.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("SST-2 data missing at \(data.path)") }
            return print("skipping SST-2 import: \(data.path) is missing (set SQUEEZE_DATA)")
        }
        let dir = try TempDir()
        let report = try TextClassificationImport(reader: TextClassificationReader(format: .tsv))
            .run(train: paths[0], dev: paths[1], test: paths[2], into: dir.file("sst2"))
        #expect(report.labels == ["0", "1"])
        // Every line after the header is a row.
        let lineCounts = try paths.map { try String(contentsOfFile: $0, encoding: .utf8).split(separator: "\n").count - 1 }
        #expect(report.splits["train"]?.rows == lineCounts[0])
        #expect(report.splits["dev"]?.rows == lineCounts[1])
        #expect(report.splits["test"]?.rows == lineCounts[2])
        #expect(lineCounts[2] == 872)
        #expect(report.splits.values.allSatisfy { $0.badRows == 0 })
        let test = try report.dataset.split("test")
        #expect(test.first?.text == "it 's a charming and often affecting journey . ")
        #expect(test.first?.label == 1)
    }
}
