import Foundation

/// Builds a `TextClassificationDataset` from raw train/dev/test files.
///
/// Labels are the distinct labels of the train file, sorted (numerically when
/// every label is an integer, otherwise by UTF-8 bytes). A dev or test row
/// whose label does not occur in train is a bad row. Without a dev file, a
/// seeded fraction of train can become dev.
public struct TextClassificationImport: Sendable {
    public var reader: TextClassificationReader
    /// With no dev file: the fraction of train rows (0 < f < 1) moved to dev.
    public var devFraction: Double?
    /// Fixes which rows `devFraction` moves.
    public var seed: UInt64

    public init(reader: TextClassificationReader, devFraction: Double? = nil, seed: UInt64 = 0) {
        self.reader = reader
        self.devFraction = devFraction
        self.seed = seed
    }

    /// Counts for one split, for metrics.
    public struct SplitReport: Sendable, Hashable {
        public var rows: Int
        /// Rows per label name.
        public var labelCounts: [String: Int]
        /// Rows left out under `on_bad_rows: skip`.
        public var badRows: Int

        public init(rows: Int, labelCounts: [String: Int], badRows: Int) {
            self.rows = rows
            self.labelCounts = labelCounts
            self.badRows = badRows
        }
    }

    public struct Report: Sendable {
        public var labels: [String]
        /// By split name; the splits written.
        public var splits: [String: SplitReport]
        /// The first few rows left out, as `file:line: reason`.
        public var badRowSamples: [String]
        public var dataset: TextClassificationDataset
    }

    /// Reads the files, checks them and writes the dataset to `directory`.
    public func run(train: String, dev: String?, test: String?, into directory: String) throws(ModelFileError) -> Report {
        let trainTable = try reader.read(train)
        guard !trainTable.rows.isEmpty else {
            throw ModelFileError(file: train, "has no usable rows")
        }
        let labels = Self.sortedLabels(Set(trainTable.rows.map(\.label)))
        let labelIndex = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        var bad: [String: [BadRow]] = ["train": trainTable.bad]

        var splits: [(name: String, rows: [TextClassificationRow])] = []
        if let dev {
            guard devFraction == nil else {
                throw ModelFileError(file: dev, "a dev file is given, so `split_dev_from_train` must not be")
            }
            splits.append(("train", trainTable.rows))
            splits.append(("dev", try knownLabelRows(dev, labels: labels, bad: &bad, split: "dev")))
        } else if let fraction = devFraction {
            guard fraction > 0, fraction < 1 else {
                throw ModelFileError(file: train, "split_dev_from_train must be between 0 and 1 (exclusive), got \(fraction)")
            }
            guard trainTable.rows.count >= 2 else {
                throw ModelFileError(file: train, "has \(trainTable.rows.count) usable row; splitting off dev needs at least 2")
            }
            let (kept, held) = Self.split(trainTable.rows, fraction: fraction, seed: seed)
            splits.append(("train", kept))
            splits.append(("dev", held))
        } else {
            splits.append(("train", trainTable.rows))
        }
        if let test {
            splits.append(("test", try knownLabelRows(test, labels: labels, bad: &bad, split: "test")))
        }

        var examples: [(name: String, examples: [TextClassificationDataset.Example])] = []
        var reports: [String: SplitReport] = [:]
        for (name, rows) in splits {
            var counts: [String: Int] = [:]
            var encoded: [TextClassificationDataset.Example] = []
            encoded.reserveCapacity(rows.count)
            for row in rows {
                guard let index = labelIndex[row.label] else { continue }
                counts[row.label, default: 0] += 1
                encoded.append((row.text, index))
            }
            examples.append((name, encoded))
            reports[name] = SplitReport(rows: encoded.count, labelCounts: counts, badRows: bad[name]?.count ?? 0)
        }
        let dataset = try TextClassificationDataset.write(to: directory, labels: labels, splits: examples)
        let samples = ["train", "dev", "test"].flatMap { bad[$0] ?? [] }.prefix(10).map(\.description)
        return Report(labels: labels, splits: reports, badRowSamples: Array(samples), dataset: dataset)
    }

    /// Rows of a dev or test file; a label unknown to train is a bad row.
    private func knownLabelRows(
        _ path: String, labels: [String], bad: inout [String: [BadRow]], split: String
    ) throws(ModelFileError) -> [TextClassificationRow] {
        let table = try reader.read(path, knownLabels: labels)
        bad[split] = table.bad
        return table.rows
    }

    /// Numeric order when every label is an integer, else UTF-8 byte order.
    static func sortedLabels(_ labels: Set<String>) -> [String] {
        let numbers = labels.compactMap { label in Int(label).map { (label, $0) } }
        if numbers.count == labels.count {
            return numbers.sorted { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }.map(\.0)
        }
        return labels.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// A seeded random `fraction` of rows (at least one, never all) held out;
    /// both parts keep file order.
    static func split(
        _ rows: [TextClassificationRow], fraction: Double, seed: UInt64
    ) -> (kept: [TextClassificationRow], held: [TextClassificationRow]) {
        let count = min(max(Int((Double(rows.count) * fraction).rounded()), 1), rows.count - 1)
        var generator = SplitMix64(seed: seed)
        let order = generator.shuffled(Array(rows.indices))
        var isHeld = [Bool](repeating: false, count: rows.count)
        for index in order.prefix(count) { isHeld[index] = true }
        var kept: [TextClassificationRow] = []
        var held: [TextClassificationRow] = []
        for (index, row) in rows.enumerated() {
            if isHeld[index] { held.append(row) } else { kept.append(row) }
        }
        return (kept, held)
    }
}
