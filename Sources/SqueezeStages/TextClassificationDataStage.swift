import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

/// `uses: data/text-classification` — reads train/dev/test files (TSV, CSV or
/// JSONL) into a `squeeze.text-classification/1` dataset directory:
/// `manifest.json` with the sorted label names and the splits, and one
/// `<split>.jsonl` per split with `{"text": …, "label": <index>}` lines.
/// The files are local (`train`, `dev`, `test`) or downloaded (`source`, a
/// pinned URL: a single file, or an archive with member paths per split);
/// with both, `source` is the fallback used when a local file is missing
/// (docs/sources.md).
public struct TextClassificationDataStage: Stage {
    /// `files` of a download: member paths by split (`train`, `dev`, `test`).
    typealias Download = PinnedDownload<[String: String]>

    public struct Params: StageParameters {
        public static let train = Parameter("train", .optional(.path), doc: "The training file. Its labels (sorted; numerically when all are integers) are the dataset's labels. Give `train` or `source` (or both: then `source` is used only when a local file is missing).")
        public static let dev = Parameter("dev", .optional(.path), doc: "The development file (optional). Labels must occur in train.")
        public static let test = Parameter("test", .optional(.path), doc: "The test file (optional, must be labelled). Labels must occur in train.")
        public static let format = Parameter("format", .optional(.enumeration(TextTableFormat.allCases.map(\.rawValue))), doc: "File format; by default from the train file's extension (.tsv, .csv, .jsonl).")
        public static let text_column = Parameter("text_column", .column, default: .name("sentence"), doc: "The text column: a header name (or JSONL key), or a 0-based number for files without a header.")
        public static let label_column = Parameter("label_column", .column, default: .name("label"), doc: "The label column: a header name (or JSONL key), or a 0-based number for files without a header.")
        public static let has_header = Parameter("has_header", .bool, default: true, doc: "TSV and CSV: whether the first line names the columns.")
        public static let split_dev_from_train = Parameter("split_dev_from_train", .optional(.number), doc: "Without `dev`: this fraction (between 0 and 1) of the train rows, chosen with the stage's seed, becomes the dev split.")
        public static let on_bad_rows = Parameter("on_bad_rows", .enumeration(BadRowPolicy.allCases.map(\.rawValue)), default: "error", doc: "A row with the wrong number of columns, an empty text or label, or a dev/test label not in train: `error` stops at it (naming file:line), `skip` leaves it out and counts it.")
        public static let max_rows = Parameter("max_rows", .optional(.int), doc: "Read at most this many usable rows per file (for quick runs).")
        static let source = Parameter(
            "source", .optional(.download(Download.self)),
            fallback: ParameterFallback(replaces: ["train", "dev", "test"], companions: ["split_dev_from_train"]),
            doc: "Download the data instead: `{url: https://…, sha256: <64 hex digits>, files: {train: MEMBER, dev: MEMBER, test: MEMBER}}`. Fetched once into the store's download area, verified against the pin, unpacked when it is a zip or tar(.gz); `files` names the members per split (`train` required); leave `files` out when the URL is one data file (the train split; then set `format`). Keyed by `sha256` and `files`, never the URL. Given together with `train`, it is the fallback: used (with `split_dev_from_train`) only when a file of `train`, `dev` or `test` does not exist, and left out of the key otherwise. See docs/sources.md.")

        public static let parameters: [any ParameterDeclaration] = [
            train, dev, test, source, format, text_column, label_column, has_header, split_dev_from_train, on_bad_rows, max_rows,
        ]

        public var train: String?
        var source: Download?
        public var dev: String?
        public var test: String?
        public var format: String?
        public var text_column: Column
        public var label_column: Column
        public var has_header: Bool
        public var split_dev_from_train: Double?
        public var on_bad_rows: String
        public var max_rows: Int?

        public init(_ arguments: StageArguments) throws {
            train = try arguments[Self.train]
            source = try arguments[Self.source]
            dev = try arguments[Self.dev]
            test = try arguments[Self.test]
            format = try arguments[Self.format]
            text_column = try arguments[Self.text_column]
            label_column = try arguments[Self.label_column]
            has_header = try arguments[Self.has_header]
            split_dev_from_train = try arguments[Self.split_dev_from_train]
            on_bad_rows = try arguments[Self.on_bad_rows]
            max_rows = try arguments[Self.max_rows]
        }
    }

    /// A column given by name (a string) or 0-based number (an integer).
    public enum Column: ParameterValue {
        case name(String)
        case index(Int)

        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let index = try? container.decode(Int.self) {
                self = .index(index)
            } else {
                self = .name(try container.decode(String.self))
            }
        }

        public var parameterValue: Value {
            switch self {
            case .name(let name): .string(name)
            case .index(let index): .int(index)
            }
        }

        var selector: ColumnSelector {
            switch self {
            case .name(let name): .name(name)
            case .index(let index): .index(index)
            }
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "data/text-classification",
        version: 1,
        summary: "Read text-classification data (TSV, CSV or JSONL) into a dataset with train/dev/test splits and integer labels.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("dataset", kind: "dataset", doc: "The dataset directory: manifest.json and <split>.jsonl."),
        ],
        seedUse: .whenGiven(Params.split_dev_from_train.spec.name),
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = PinnedDownloads.check(with, parameter: "source")
        let source = with["source"]
        if with["train"] == nil, source == nil {
            problems.append(Diagnostic(
                "`data/text-classification` needs `train` or `source`", at: with.location,
                hint: "for example `train: data/train.tsv`, or `source: {url: https://…/data.zip, sha256: …, files: {train: data/train.tsv}}`"))
        }
        if let source {
            problems += checkSource(source, with: with)
        }
        if let fraction = with["split_dev_from_train"], source == nil || with["train"] == nil {
            if let text = fraction.scalar, let value = Double(text), !(value > 0 && value < 1) {
                problems.append(Diagnostic(
                    "`split_dev_from_train` must be between 0 and 1 (exclusive), got \(text)", at: fraction.location,
                    hint: "for example 0.1 keeps a tenth of the training rows for dev"))
            }
            if with["dev"] != nil {
                problems.append(Diagnostic(
                    "`split_dev_from_train` is set, but a `dev` file is given", at: fraction.location,
                    hint: "remove one of them: either split dev off train, or read it from `dev`"))
            }
        }
        if let maxRows = with["max_rows"], let text = maxRows.scalar, let value = Int(text), value < 1 {
            problems.append(Diagnostic("`max_rows` must be at least 1, got \(value)", at: maxRows.location))
        }
        if with["format"] == nil, let train = with["train"] ?? with["source"]?["files"]?["train"], let text = train.scalar, !text.contains("${"),
           TextTableFormat.inferred(fromPath: text) == nil {
            problems.append(Diagnostic(
                "cannot tell the format of `\(text)` from its extension", at: train.location,
                hint: "add `format: tsv`, `format: csv` or `format: jsonl`"))
        }
        return problems
    }

    /// The checks of `source` that need the rest of `with`: its `files`, and
    /// which split fraction goes with it.
    static func checkSource(_ source: YAMLNode, with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        let splits = ["train", "dev", "test"]
        if let files = source["files"] {
            if let entries = files.entries {
                for entry in entries {
                    let (key, value) = (entry.key, entry.value)
                    if !splits.contains(key.scalar ?? "") {
                        problems.append(Diagnostic(
                            "`files` names the members per split: `\(key.scalar ?? "")` is not `train`, `dev` or `test`", at: key.location,
                            hint: Suggestion.hint(for: key.scalar ?? "", in: splits)))
                    } else if value.scalar == nil {
                        problems.append(Diagnostic("expected a member path (a string)", at: value.location, hint: "for example `train: SST-2/train.tsv`"))
                    }
                }
                if files["train"] == nil {
                    problems.append(Diagnostic(
                        "`files` needs the `train` member", at: files.location, hint: "for example `files: {train: SST-2/train.tsv, test: SST-2/dev.tsv}`"))
                }
                if files["dev"] != nil, with["split_dev_from_train"] != nil {
                    problems.append(Diagnostic(
                        "`split_dev_from_train` is set, but `files` names a `dev` member", at: files.location,
                        hint: "remove one of them: either split dev off train, or read it from the archive"))
                }
            } else {
                problems.append(Diagnostic(
                    "expected a mapping from split to archive member", at: files.location, hint: "for example `files: {train: SST-2/train.tsv, test: SST-2/dev.tsv}`"))
            }
        } else if with["format"] == nil {
            problems.append(Diagnostic(
                "a download without `files` is read as one data file, whose format its URL cannot decide (a mirror may name it otherwise)",
                at: source.location, hint: "add `format: tsv`, `format: csv` or `format: jsonl`, or name the members of an archive in `files`"))
        }
        if with["train"] != nil, with["split_dev_from_train"] != nil, with["dev"] == nil {
            problems.append(Diagnostic(
                "with both `train` and a `source` fallback, `split_dev_from_train` goes with the download, so the local files need a `dev` file",
                at: with["split_dev_from_train"]?.location ?? source.location,
                hint: "add `dev: FILE`, or give only one of `train` and `source`"))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        var train = params.train
        var dev = params.dev
        var test = params.test
        var formatSource = params.train
        let scratch = try PinnedDownloads.makeScratch("text-classification")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        if train == nil, let source = params.source {
            let fetched = try await PinnedDownloads.fetch(
                url: source.url, sha256: source.sha256, parameter: "source", context: context, scratch: scratch)
            if let files = source.files {
                guard let member = files["train"] else { throw StageFailure("`files` needs the `train` member", parameter: "source") }
                train = try fetched.member(member, parameter: "source")
                dev = try files["dev"].map { try fetched.member($0, parameter: "source") }
                test = try files["test"].map { try fetched.member($0, parameter: "source") }
                formatSource = member
            } else {
                guard fetched.unpacked == nil else {
                    throw StageFailure("\(fetched.shownURL) is an archive: name the members per split in `files`, e.g. `files: {train: DIR/train.tsv}`", parameter: "source")
                }
                train = fetched.file
            }
            context.log.line("reading the data downloaded from \(fetched.shownURL)")
        }
        guard let train else {
            throw StageFailure("`data/text-classification` needs `train` or `source`")
        }
        let format: TextTableFormat
        if let name = params.format {
            guard let parsed = TextTableFormat(rawValue: name) else { throw StageFailure("unknown format `\(name)`") }
            format = parsed
        } else {
            guard let inferred = formatSource.flatMap(TextTableFormat.inferred(fromPath:)) else {
                throw StageFailure("cannot tell the format of \(formatSource ?? train) from its extension; set `format` (tsv, csv or jsonl)")
            }
            format = inferred
        }
        guard let policy = BadRowPolicy(rawValue: params.on_bad_rows) else {
            throw StageFailure("`on_bad_rows` must be error or skip, got `\(params.on_bad_rows)`")
        }
        if let maxRows = params.max_rows, maxRows < 1 {
            throw StageFailure("`max_rows` must be at least 1, got \(maxRows)")
        }
        let reader = TextClassificationReader(
            format: format, textColumn: params.text_column.selector, labelColumn: params.label_column.selector,
            hasHeader: params.has_header, onBadRows: policy, maxRows: params.max_rows)
        let importer = TextClassificationImport(reader: reader, devFraction: params.split_dev_from_train, seed: context.seed)
        context.progress.report(StageProgress(message: "reading \((train as NSString).lastPathComponent)"))
        let report = try StageFailure.wrapping { () throws(ModelFileError) in
            try importer.run(train: train, dev: dev, test: test, into: context.outputDirectory)
        }

        var metrics: [String: Value] = ["labels": .int(report.labels.count)]
        var skipped = 0
        for (split, counts) in report.splits {
            metrics["\(split)_rows"] = .int(counts.rows)
            for (label, count) in counts.labelCounts {
                metrics["\(split)_label_\(label)"] = .int(count)
            }
            if policy == .skip { metrics["\(split)_bad_rows"] = .int(counts.badRows) }
            skipped += counts.badRows
        }
        if policy == .skip { metrics["bad_rows_skipped"] = .int(skipped) }
        context.log.line("labels: \(report.labels.joined(separator: ", "))")
        for split in report.dataset.splitNames {
            guard let counts = report.splits[split] else { continue }
            let labels = report.labels.map { "\($0)=\(counts.labelCounts[$0] ?? 0)" }.joined(separator: " ")
            context.log.line("\(split): \(counts.rows) rows (\(labels)), \(counts.badRows) bad rows skipped")
        }
        if !report.badRowSamples.isEmpty {
            context.log.line("first rows left out:")
            for sample in report.badRowSamples { context.log.line("  \(sample)") }
        }
        return StageResult(metrics: metrics, outputs: ["dataset": "."])
    }
}

extension ParameterType where Decoded == TextClassificationDataStage.Column {
    static var column: Self { Self(.oneOf([.string, .int])) }
}
