import Foundation
import SqueezeSupport

/// How the files of a language-modelling split are read.
public enum TextFileFormat: String, Sendable, CaseIterable {
    /// UTF-8 plain text.
    case text
    /// One JSON object per line; the text is one string field of it.
    case jsonl
}

/// Where plain text splits into documents.
public enum DocumentBoundary: String, Sendable, CaseIterable {
    /// Every line that is not blank is a document (wikitext's paragraphs).
    case line
    /// Runs of non-blank lines, separated by blank lines, are documents.
    case blankLine = "blank_line"
    /// Each file is one document.
    case file
}

/// Reads text files into documents (each later followed by EOS) or into the
/// rows the `joined` perplexity protocol joins.
///
/// Lines are read as Python's text mode reads them, since that is how the
/// Hugging Face `datasets` rows of wikitext come about: a line ends after
/// `\n`, `\r\n` or `\r`, and its terminator reads as `\n` (universal
/// newlines). A line is *blank* when `str.strip()` leaves nothing, i.e. it
/// holds only Python whitespace (`isPythonWhitespace`).
public struct TextCorpusReader: Sendable {
    public var format: TextFileFormat
    /// The JSONL field holding the text.
    public var textField: String
    /// How plain text splits into documents (JSONL: every record is one).
    public var boundary: DocumentBoundary

    public init(format: TextFileFormat, textField: String = "text", boundary: DocumentBoundary = .line) {
        self.format = format
        self.textField = textField
        self.boundary = boundary
    }

    /// One file's bytes as text, with its SHA-256.
    public struct Source: Sendable, Hashable {
        public var path: String
        public var text: String
        /// Lowercase hex SHA-256 of the file's bytes.
        public var sha256: String

        public init(path: String, text: String, sha256: String) {
            self.path = path
            self.text = text
            self.sha256 = sha256
        }
    }

    /// Reads `path` as UTF-8; invalid UTF-8 is an error naming the first bad line.
    public static func read(_ path: String) throws(ModelFileError) -> Source {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "cannot be read")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            var line = 1
            for bytes in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                if String(validating: bytes, as: UTF8.self) == nil { break }
                line += 1
            }
            throw ModelFileError(file: "\(path):\(line)", "not valid UTF-8 text")
        }
        return Source(path: path, text: text, sha256: Hashing.sha256(data).hex)
    }

    /// The documents of the sources, in order. Text: by `boundary`, without
    /// line terminators (lines of a `blank_line` paragraph joined by `\n`; a
    /// `file` document is the file's text unchanged); JSONL: the field of each
    /// record. Blank documents are left out.
    public func documents(of sources: [Source]) throws(ModelFileError) -> [String] {
        var documents: [String] = []
        for source in sources {
            switch format {
            case .jsonl:
                documents += try jsonFieldValues(source).filter { !Self.isBlank($0) }
            case .text:
                switch boundary {
                case .file:
                    if !Self.isBlank(source.text) { documents.append(source.text) }
                case .line:
                    for line in Self.pythonLines(source.text) where !Self.isBlank(line) {
                        documents.append(Self.withoutTerminator(line))
                    }
                case .blankLine:
                    var paragraph: [String] = []
                    for line in Self.pythonLines(source.text) {
                        if Self.isBlank(line) {
                            if !paragraph.isEmpty { documents.append(paragraph.joined(separator: "\n")) }
                            paragraph = []
                        } else {
                            paragraph.append(Self.withoutTerminator(line))
                        }
                    }
                    if !paragraph.isEmpty { documents.append(paragraph.joined(separator: "\n")) }
                }
            }
        }
        return documents
    }

    /// The rows the Hugging Face `datasets` wikitext script yields for these
    /// files, in order: every line including its `\n`, a blank line as `""`
    /// (`yield idx, {"text": row} if row.strip() else {"text": ""}`). JSONL:
    /// every record's field, unchanged.
    public func rows(of sources: [Source]) throws(ModelFileError) -> [String] {
        var rows: [String] = []
        for source in sources {
            switch format {
            case .jsonl: rows += try jsonFieldValues(source)
            case .text: rows += Self.pythonLines(source.text).map { Self.isBlank($0) ? "" : $0 }
            }
        }
        return rows
    }

    /// The `textField` string of every non-blank line (JSONL line numbers are
    /// those of `\n`-separated lines).
    private func jsonFieldValues(_ source: Source) throws(ModelFileError) -> [String] {
        var values: [String] = []
        var lineNumber = 0
        for line in source.text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let record: Value
            do {
                record = try Value(json: line)
            } catch {
                throw ModelFileError(file: "\(source.path):\(lineNumber)", "not valid JSON (column \(error.column): \(error.message))")
            }
            guard case .object(let fields) = record else {
                throw ModelFileError(file: "\(source.path):\(lineNumber)", "not a JSON object but \(record.typeName)")
            }
            guard let field = fields[textField] else {
                let keys = fields.keys.sorted().map { "`\($0)`" }.joined(separator: ", ")
                throw ModelFileError(file: "\(source.path):\(lineNumber)", "no field `\(textField)` (fields: \(keys.isEmpty ? "none" : keys))")
            }
            guard case .string(let text) = field else {
                throw ModelFileError(file: "\(source.path):\(lineNumber)", "`\(textField)` is \(field.typeName), not a string")
            }
            values.append(text)
        }
        return values
    }

    /// Lines as Python's universal-newline text mode yields them: each with
    /// its terminator read as `\n` (the last without one when the text does
    /// not end with a line break); no line for empty text.
    public static func pythonLines(_ text: String) -> [String] {
        var lines: [String] = []
        let utf8 = text.utf8
        var start = utf8.startIndex
        var index = start
        while index < utf8.endIndex {
            let byte = utf8[index]
            guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else {
                utf8.formIndex(after: &index)
                continue
            }
            var next = utf8.index(after: index)
            if byte == UInt8(ascii: "\n") {
                lines.append(String(Substring(utf8[start..<next])))
            } else {
                if next < utf8.endIndex, utf8[next] == UInt8(ascii: "\n") { utf8.formIndex(after: &next) }
                lines.append(String(Substring(utf8[start..<index])) + "\n")
            }
            start = next
            index = next
        }
        if start < utf8.endIndex { lines.append(String(Substring(utf8[start...]))) }
        return lines
    }

    /// Whether Python's `str.strip()` leaves nothing of `text`.
    public static func isBlank(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy(isPythonWhitespace)
    }

    /// Python's `str.isspace()` for one character: bidirectional class WS, B
    /// or S, or general category Zs. Unlike Unicode's White_Space this
    /// includes the separators U+001C–U+001F.
    public static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
        default: false
        }
    }

    private static func withoutTerminator(_ line: String) -> String {
        line.utf8.last == UInt8(ascii: "\n") ? String(Substring(line.utf8.dropLast())) : line
    }

    /// How many of `count` documents the contiguous tail `fraction` takes:
    /// `count × fraction` rounded to the nearest integer (halves up), at least
    /// one and leaving at least one; nil when `count` is below 2.
    public static func tailCount(of count: Int, fraction: Double) -> Int? {
        guard count >= 2, fraction > 0, fraction < 1 else { return nil }
        let rounded = Int((Double(count) * fraction).rounded(.toNearestOrAwayFromZero))
        return min(max(rounded, 1), count - 1)
    }
}

extension BPETokenizer {
    /// The documents' tokens, each document followed by `eos`, encoded without
    /// special tokens on up to `threads` tasks. Each document is encoded on its
    /// own, so the stream does not depend on `threads`.
    public func documentStream(_ documents: [String], eos: Int32, threads: Int) async -> [Int32] {
        let parts = max(1, min(threads, documents.count))
        let size = (documents.count + parts - 1) / parts
        let encoded = await withTaskGroup(of: (Int, [Int32]).self) { group in
            for part in 0..<parts {
                let range = min(documents.count, part * size)..<min(documents.count, (part + 1) * size)
                group.addTask {
                    var stream: [Int32] = []
                    for document in documents[range] {
                        stream += encode(document).map { Int32(truncatingIfNeeded: $0) }
                        stream.append(eos)
                    }
                    return (part, stream)
                }
            }
            var results = [[Int32]](repeating: [], count: parts)
            for await (part, stream) in group { results[part] = stream }
            return results
        }
        return encoded.flatMap { $0 }
    }

    /// The `joined` perplexity protocol: `rows` joined by "\n\n" into one
    /// string, encoded once without special tokens and without EOS.
    public func joinedStream(_ rows: [String]) -> [Int32] {
        encode(rows.joined(separator: "\n\n")).map { Int32(truncatingIfNeeded: $0) }
    }
}
