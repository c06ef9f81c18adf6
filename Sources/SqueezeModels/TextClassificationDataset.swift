import Foundation
import SqueezeSupport

/// A text-classification dataset directory (`squeeze.text-classification/1`):
///
///     manifest.json  {"format": "squeeze.text-classification/1",
///                     "labels": ["0", "1"],
///                     "splits": {"train": {"file": "train.jsonl", "rows": 67349}, …}}
///     train.jsonl    {"text":"…","label":1}   (label: index into `labels`)
public struct TextClassificationDataset: Sendable, Hashable {
    public static let format = "squeeze.text-classification/1"
    public static let manifestFileName = "manifest.json"

    /// One split's file (in the dataset directory) and row count.
    public struct Split: Codable, Sendable, Hashable {
        public var file: String
        public var rows: Int

        public init(file: String, rows: Int) {
            self.file = file
            self.rows = rows
        }
    }

    struct Manifest: Codable {
        var format: String
        var labels: [String]
        var splits: [String: Split]
    }

    /// One example as stored: the text and its label's index into `labels`.
    public typealias Example = (text: String, label: Int)

    public let directory: String
    /// Label names; an example's label is an index into this list.
    public let labels: [String]
    public let splits: [String: Split]

    /// Opens the dataset: the manifest must parse with the current format,
    /// unique labels, and split files that exist in the directory.
    public init(directory: String) throws(ModelFileError) {
        let manifestPath = (directory as NSString).appendingPathComponent(Self.manifestFileName)
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw ModelFileError(file: manifestPath, "missing or unreadable; this directory is not a text-classification dataset")
        }
        let manifest: Manifest
        do {
            manifest = try SqueezeJSON.decode(Manifest.self, from: data)
        } catch {
            throw ModelFileError(file: manifestPath, "not a valid dataset manifest: \(error)")
        }
        guard manifest.format == Self.format else {
            throw ModelFileError(file: manifestPath, "format is \"\(manifest.format)\", expected \"\(Self.format)\"")
        }
        guard !manifest.labels.isEmpty, Set(manifest.labels).count == manifest.labels.count else {
            throw ModelFileError(file: manifestPath, "`labels` must be a non-empty list without duplicates")
        }
        for (name, split) in manifest.splits.sorted(by: { $0.key < $1.key }) {
            guard ModelArtifact.isPlainFileName(split.file), split.rows >= 0 else {
                throw ModelFileError(file: manifestPath, "split `\(name)` has an invalid file name or row count")
            }
            let path = (directory as NSString).appendingPathComponent(split.file)
            guard ModelFiles.isRegularFile(path) else {
                throw ModelFileError(file: path, "listed for split `\(name)` in \(Self.manifestFileName) but missing")
            }
        }
        self.directory = directory
        self.labels = manifest.labels
        self.splits = manifest.splits
    }

    /// Split names: train, dev, test first, then any others by name.
    public var splitNames: [String] {
        let conventional = ["train", "dev", "test"]
        return conventional.filter { splits[$0] != nil } + splits.keys.filter { !conventional.contains($0) }.sorted()
    }

    /// The examples of split `name`, in file order. Every line must be an
    /// object with a string `text` and an integer `label` below `labels.count`,
    /// and the count must match the manifest.
    public func split(_ name: String) throws(ModelFileError) -> [Example] {
        guard let split = splits[name] else {
            let known = splitNames.map { "`\($0)`" }.joined(separator: ", ")
            throw ModelFileError(
                file: (directory as NSString).appendingPathComponent(Self.manifestFileName),
                "no split `\(name)` (splits: \(known))")
        }
        let path = (directory as NSString).appendingPathComponent(split.file)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "cannot be read")
        }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let rows = lines.last?.isEmpty == true ? lines.dropLast() : lines[...]
        let examples = try Self.decode(rows, path: path)
        for (index, example) in examples.enumerated() where !labels.indices.contains(example.label) {
            throw ModelFileError(file: "\(path):\(index + 1)", "label \(example.label) is not an index into the \(labels.count) labels")
        }
        guard examples.count == split.rows else {
            throw ModelFileError(file: path, "has \(examples.count) rows, but \(Self.manifestFileName) says \(split.rows)")
        }
        return examples
    }

    private struct Line: Decodable {
        var text: String
        var label: Int
    }

    /// All lines in one decoder call (as a JSON array); only when that fails,
    /// line by line to name the first bad one.
    private static func decode(_ lines: ArraySlice<Data.SubSequence>, path: String) throws(ModelFileError) -> [Example] {
        var array = Data("[".utf8)
        for (index, line) in lines.enumerated() {
            if index > 0 { array.append(UInt8(ascii: ",")) }
            array.append(contentsOf: line)
        }
        array.append(UInt8(ascii: "]"))
        let decoder = JSONDecoder()
        if let decoded = try? decoder.decode([Line].self, from: array) {
            return decoded.map { ($0.text, $0.label) }
        }
        var examples: [Example] = []
        for (index, line) in lines.enumerated() {
            guard let decoded = try? decoder.decode(Line.self, from: Data(line)) else {
                throw ModelFileError(file: "\(path):\(index + 1)", "not a JSON object with a string `text` and an integer `label`")
            }
            examples.append((decoded.text, decoded.label))
        }
        return examples
    }

    /// Writes a dataset to `directory` (created when missing): one JSONL file
    /// per split, each atomically, then the manifest. Labels of examples must
    /// be indices into `labels`.
    @discardableResult
    public static func write(
        to directory: String, labels: [String], splits: [(name: String, examples: [Example])]
    ) throws(ModelFileError) -> TextClassificationDataset {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create the directory: \(error.localizedDescription)")
        }
        var entries: [String: Split] = [:]
        for (name, examples) in splits {
            let file = name + ".jsonl"
            guard ModelArtifact.isPlainFileName(file), entries[name] == nil else {
                throw ModelFileError(file: directory, "invalid or duplicate split name `\(name)`")
            }
            let path = (directory as NSString).appendingPathComponent(file)
            let writer = try AtomicFileWriter(path: path)
            var chunk = ""
            for example in examples {
                guard labels.indices.contains(example.label) else {
                    throw ModelFileError(file: path, "label \(example.label) is not an index into the \(labels.count) labels")
                }
                chunk += #"{"text":\#(JSONText.string(example.text)),"label":\#(example.label)}"# + "\n"
                if chunk.utf8.count >= ModelFiles.chunkSize {
                    try writer.write(chunk)
                    chunk = ""
                }
            }
            try writer.write(chunk)
            try writer.commit()
            entries[name] = Split(file: file, rows: examples.count)
        }
        let manifest = Manifest(format: format, labels: labels, splits: entries)
        let encoder = SqueezeJSON.frozenOutputManifestEncoder()
        let manifestPath = (directory as NSString).appendingPathComponent(manifestFileName)
        let data: Data
        do {
            data = try encoder.encode(manifest)
        } catch {
            throw ModelFileError(file: manifestPath, "cannot encode the manifest: \(error)")
        }
        let writer = try AtomicFileWriter(path: manifestPath)
        try writer.write([UInt8](data) + [UInt8(ascii: "\n")])
        try writer.commit()
        return try TextClassificationDataset(directory: directory)
    }
}
