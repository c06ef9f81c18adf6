import Foundation

/// The layout of a raw text-classification file.
public enum TextTableFormat: String, Sendable, CaseIterable {
    /// Tab-separated, no quoting (GLUE's SST-2): a field may hold `"`.
    case tsv
    /// Comma-separated, RFC 4180 quoting (`"a, b"`, `""` for a quote, newlines inside quotes).
    case csv
    /// One JSON object per line.
    case jsonl

    /// The format a file name's extension implies (`.tsv`, `.csv`, `.jsonl`/`.ndjson`).
    public static func inferred(fromPath path: String) -> TextTableFormat? {
        switch (path as NSString).pathExtension.lowercased() {
        case "tsv": .tsv
        case "csv": .csv
        case "jsonl", "ndjson": .jsonl
        default: nil
        }
    }
}

/// A column by header name or by 0-based position.
public enum ColumnSelector: Sendable, Hashable, CustomStringConvertible {
    case name(String)
    case index(Int)

    public var description: String {
        switch self {
        case .name(let name): "`\(name)`"
        case .index(let index): "#\(index)"
        }
    }
}

/// What to do with a row that cannot be used.
public enum BadRowPolicy: String, Sendable, CaseIterable {
    /// Stop with an error naming the file and line.
    case error
    /// Leave the row out and count it.
    case skip
}

/// One usable row of a raw file.
public struct TextClassificationRow: Sendable, Hashable {
    public var text: String
    public var label: String
    /// 1-based line where the row starts.
    public var line: Int
}

/// A row left out, with where and why.
public struct BadRow: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var reason: String

    public var description: String { "\(file):\(line): \(reason)" }
}

/// Reads the text and label columns of a TSV, CSV or JSONL file.
public struct TextClassificationReader: Sendable {
    public var format: TextTableFormat
    public var textColumn: ColumnSelector
    public var labelColumn: ColumnSelector
    /// TSV and CSV: whether the first record names the columns.
    public var hasHeader: Bool
    public var onBadRows: BadRowPolicy
    /// Stop after this many usable rows.
    public var maxRows: Int?

    public init(
        format: TextTableFormat, textColumn: ColumnSelector = .name("sentence"), labelColumn: ColumnSelector = .name("label"),
        hasHeader: Bool = true, onBadRows: BadRowPolicy = .error, maxRows: Int? = nil
    ) {
        self.format = format
        self.textColumn = textColumn
        self.labelColumn = labelColumn
        self.hasHeader = hasHeader
        self.onBadRows = onBadRows
        self.maxRows = maxRows
    }

    /// The usable rows and, with `.skip`, the rows left out. Blank lines are
    /// ignored. With `knownLabels`, a row with any other label is bad. Errors
    /// name `file:line`.
    public func read(_ path: String, knownLabels: [String]? = nil) throws(ModelFileError) -> (rows: [TextClassificationRow], bad: [BadRow]) {
        guard var data = FileManager.default.contents(atPath: path) else {
            let reason = ModelFiles.isDirectory(path) ? "is a directory, not a file" : "cannot be read"
            throw ModelFileError(file: path, reason)
        }
        if data.starts(with: [0xEF, 0xBB, 0xBF]) { data.removeFirst(3) }
        var collector = Collector(path: path, policy: onBadRows, maxRows: maxRows, knownLabels: knownLabels)
        switch format {
        case .tsv: try readDelimited(DelimitedRecords(data: data, separator: UInt8(ascii: "\t"), quoting: false), into: &collector)
        case .csv: try readDelimited(DelimitedRecords(data: data, separator: UInt8(ascii: ","), quoting: true), into: &collector)
        case .jsonl: try readJSONLines(data, into: &collector)
        }
        return (collector.rows, collector.bad)
    }

    /// Accumulates rows, applying the bad-row policy and the row limit.
    private struct Collector {
        let path: String
        let policy: BadRowPolicy
        let maxRows: Int?
        let labelSet: Set<String>?
        let labelList: String
        var rows: [TextClassificationRow] = []
        var bad: [BadRow] = []

        init(path: String, policy: BadRowPolicy, maxRows: Int?, knownLabels: [String]?) {
            self.path = path
            self.policy = policy
            self.maxRows = maxRows
            self.labelSet = knownLabels.map(Set.init)
            self.labelList = (knownLabels ?? []).map { "`\($0)`" }.joined(separator: ", ")
        }

        var isFull: Bool { maxRows.map { rows.count >= $0 } ?? false }

        mutating func add(text: String, label: String, line: Int) throws(ModelFileError) {
            let label = label.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
                try reject(line, "empty text")
            } else if label.isEmpty {
                try reject(line, "empty label")
            } else if let labelSet, !labelSet.contains(label) {
                try reject(line, "label `\(label)` does not occur in the training data (labels: \(labelList))")
            } else {
                rows.append(TextClassificationRow(text: text, label: label, line: line))
            }
        }

        mutating func reject(_ line: Int, _ reason: String) throws(ModelFileError) {
            let row = BadRow(file: path, line: line, reason: reason)
            guard policy == .skip else {
                throw ModelFileError(file: "\(path):\(line)", reason + " (use `on_bad_rows: skip` to leave such rows out)")
            }
            bad.append(row)
        }
    }

    private func readDelimited(_ records: DelimitedRecords, into collector: inout Collector) throws(ModelFileError) {
        var records = records
        var textIndex: Int?
        var labelIndex: Int?
        var width: Int?
        var columnNames: [String] = []
        if !hasHeader {
            guard case .index(let text) = textColumn, case .index(let label) = labelColumn else {
                throw ModelFileError(file: collector.path, "without a header, columns are chosen by 0-based number (text_column: 0, label_column: 1), not by name")
            }
            textIndex = text
            labelIndex = label
        }
        while !collector.isFull, let record = try records.next(path: collector.path) {
            guard let fields = record.fields else {
                try collector.reject(record.line, "not valid UTF-8")
                continue
            }
            if fields == [""] { continue }
            if hasHeader && width == nil {
                columnNames = fields.map { $0.trimmingCharacters(in: .whitespaces) }
                width = fields.count
                textIndex = try index(of: textColumn, in: columnNames, line: record.line, path: collector.path)
                labelIndex = try index(of: labelColumn, in: columnNames, line: record.line, path: collector.path)
                continue
            }
            let expected = width ?? fields.count
            if width == nil { width = fields.count }
            guard fields.count == expected else {
                try collector.reject(record.line, "\(fields.count) columns, expected \(expected)")
                continue
            }
            guard let textIndex, let labelIndex, textIndex < fields.count, labelIndex < fields.count else {
                throw ModelFileError(
                    file: "\(collector.path):\(record.line)",
                    "has \(fields.count) columns; text_column \(textColumn) or label_column \(labelColumn) is beyond them")
            }
            try collector.add(text: fields[textIndex], label: fields[labelIndex], line: record.line)
        }
    }

    private func index(of column: ColumnSelector, in names: [String], line: Int, path: String) throws(ModelFileError) -> Int {
        switch column {
        case .index(let index):
            guard names.indices.contains(index) else {
                throw ModelFileError(file: "\(path):\(line)", "column #\(index) does not exist; the header has \(names.count) columns")
            }
            return index
        case .name(let name):
            guard let index = names.firstIndex(of: name) else {
                throw ModelFileError(
                    file: "\(path):\(line)",
                    "the header has no column `\(name)` (columns: \(names.map { "`\($0)`" }.joined(separator: ", ")))")
            }
            return index
        }
    }

    private func readJSONLines(_ data: Data, into collector: inout Collector) throws(ModelFileError) {
        guard case .name(let textKey) = textColumn, case .name(let labelKey) = labelColumn else {
            throw ModelFileError(file: collector.path, "JSONL rows are objects; name text_column and label_column by key, not by number")
        }
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if collector.isFull { break }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let parsed = try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
            guard let parsed else {
                try collector.reject(lineNumber, "not valid JSON")
                continue
            }
            guard let object = parsed as? [String: Any] else {
                try collector.reject(lineNumber, "not a JSON object")
                continue
            }
            guard let text = object[textKey] as? String else {
                try collector.reject(lineNumber, object[textKey] == nil ? "no key `\(textKey)`" : "`\(textKey)` is not a string")
                continue
            }
            guard let label = Self.labelText(object[labelKey]) else {
                try collector.reject(lineNumber, object[labelKey] == nil ? "no key `\(labelKey)`" : "`\(labelKey)` is not a string or an integer")
                continue
            }
            try collector.add(text: text, label: label, line: lineNumber)
        }
    }

    /// A JSON label as text: strings as they are, integers in decimal.
    private static func labelText(_ value: Any?) -> String? {
        if let string = value as? String { return string }
        guard let number = value as? NSNumber else { return nil }
        switch String(cString: number.objCType) {
        case "c", "d", "f": return nil
        default: return (value as? Int).map(String.init)
        }
    }
}

/// Records of a delimited file, each with the line it starts on. `fields` is
/// nil when the record is not valid UTF-8.
struct DelimitedRecords {
    let data: Data
    let separator: UInt8
    let quoting: Bool
    private var position: Int
    private var line = 1

    init(data: Data, separator: UInt8, quoting: Bool) {
        self.data = data
        self.separator = separator
        self.quoting = quoting
        self.position = data.startIndex
    }

    mutating func next(path: String) throws(ModelFileError) -> (fields: [String]?, line: Int)? {
        guard position < data.endIndex else { return nil }
        let start = line
        var fields: [[UInt8]] = []
        var field: [UInt8] = []
        var quoted = false
        var atFieldStart = true
        while position < data.endIndex {
            let byte = data[position]
            position += 1
            if quoted {
                if byte == UInt8(ascii: "\"") {
                    if position < data.endIndex, data[position] == UInt8(ascii: "\"") {
                        field.append(byte)
                        position += 1
                    } else {
                        quoted = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
                continue
            }
            if byte == UInt8(ascii: "\n") {
                line += 1
                break
            }
            if byte == separator {
                fields.append(field)
                field = []
                atFieldStart = true
                continue
            }
            if quoting, atFieldStart, byte == UInt8(ascii: "\"") {
                quoted = true
                atFieldStart = false
                continue
            }
            atFieldStart = false
            field.append(byte)
        }
        if quoted {
            throw ModelFileError(file: "\(path):\(start)", "a quoted field is not closed before the end of the file")
        }
        // A \r before the line break belongs to the line ending.
        if field.last == UInt8(ascii: "\r") { field.removeLast() }
        fields.append(field)
        var strings: [String] = []
        strings.reserveCapacity(fields.count)
        for bytes in fields {
            guard let text = String(validating: bytes, as: UTF8.self) else { return (nil, start) }
            strings.append(text)
        }
        return (strings, start)
    }
}
