import CYAML

/// Turns libyaml's `problem` / `context` pair into a `Diagnostic`, with
/// friendlier wording for the mistakes people actually make in recipes
/// (tabs, unclosed quotes, misaligned indentation).
enum LibYAMLErrors {
    static func diagnostic(for parser: yaml_parser_t, in source: SourceText) -> Diagnostic {
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        if parser.error == YAML_MEMORY_ERROR {
            return Diagnostic("out of memory while parsing YAML", at: SourceLocation(file: source.file, line: 1, column: 1))
        }
        if parser.error == YAML_READER_ERROR {
            // Reader errors carry a byte offset instead of a mark.
            return Diagnostic(problem, at: source.location(ofByte: Int(clamping: parser.problem_offset)))
        }
        let at = source.location(line: Int(clamping: parser.problem_mark.line), column: Int(clamping: parser.problem_mark.column))
        let context = parser.context.map { String(cString: $0) }
        let contextAt = source.location(line: Int(clamping: parser.context_mark.line), column: Int(clamping: parser.context_mark.column))
        let problemOffset = source.byteOffset(ofScalar: Int(clamping: parser.problem_mark.index))
        let problemByte = problemOffset.flatMap { $0 < source.bytes.count ? source.bytes[$0] : nil }

        if problem.contains("tab character") || (problemByte == 0x09 && problem.hasPrefix("found character that cannot start")) {
            if let problemOffset, problemByte == 0x09, !source.isIndentation(byte: problemOffset) {
                return Diagnostic("a tab character is not allowed here in YAML", at: at, hint: "use spaces instead")
            }
            return Diagnostic("tabs are not allowed for indentation in YAML", at: at, hint: "indent with spaces")
        }
        if context == "while scanning a quoted scalar",
            problem == "found unexpected end of stream" || problem == "found unexpected document indicator"
        {
            let quote = contextByte(parser, source) == UInt8(ascii: "'") ? "'" : "\""
            return Diagnostic(
                "unclosed quote: this string never ends",
                at: contextAt,
                hint: "add the closing \(quote), or escape the quote character inside the string")
        }
        switch (problem, context) {
        case ("did not find expected key", "while parsing a block mapping"?):
            let mapping = "the mapping that starts at line \(contextAt.line), column \(contextAt.column)"
            if at.column == contextAt.column {
                // Aligned with the mapping's keys, so not an indentation slip.
                return Diagnostic(
                    "expected a `key: value` entry of \(mapping)",
                    at: at,
                    hint: "a mapping cannot continue with a list item or a bare value at the same indentation")
            }
            return Diagnostic(
                "bad indentation: expected a key of \(mapping)",
                at: at,
                hint: "keys of one mapping must start in the same column; a nested block must be indented further than its parent key")
        case ("did not find expected '-' indicator", "while parsing a block collection"?):
            return Diagnostic(
                "bad indentation: expected a `- ` item of the list that starts at line \(contextAt.line), column \(contextAt.column)",
                at: at,
                hint: "items of one list must start in the same column")
        case ("mapping values are not allowed in this context", _):
            return Diagnostic(
                "mapping values are not allowed here",
                at: at,
                hint: "if this starts a new key, check its indentation; if `: ` is part of a value, quote the value")
        case ("did not find expected <document start>", _):
            return Diagnostic(
                "unexpected content after the end of the document",
                at: at,
                hint: "a recipe is a single YAML document with one top-level value; check the indentation or remove the extra content")
        case ("block sequence entries are not allowed in this context", _):
            return Diagnostic(
                "a `- ` list item is not allowed here",
                at: at,
                hint: "check the indentation: a list under a key goes on the following lines, indented")
        case ("found character that cannot start any token", _):
            let reserved = problemByte == UInt8(ascii: "@") || problemByte == UInt8(ascii: "`") || problemByte == UInt8(ascii: "%")
            return Diagnostic(
                "found character that cannot start any token",
                at: at,
                hint: reserved ? "`@`, `` ` `` and `%` cannot start a plain value; quote the value" : nil)
        default:
            guard let context else { return Diagnostic(problem, at: at) }
            if contextAt == at { return Diagnostic("\(problem) \(context)", at: at) }
            return Diagnostic("\(problem) (\(context) that starts at line \(contextAt.line), column \(contextAt.column))", at: at)
        }
    }

    private static func contextByte(_ parser: yaml_parser_t, _ source: SourceText) -> UInt8? {
        guard let offset = source.byteOffset(ofScalar: Int(clamping: parser.context_mark.index)),
            offset < source.bytes.count
        else { return nil }
        return source.bytes[offset]
    }
}
