import Foundation
import Collections
import SqueezeYAML

/// A `with:` value after variable substitution and template parsing, before
/// type checking. Scalars keep their source text for messages and hints.
struct ParamNode: Sendable {
    enum Kind: Sendable {
        case null
        case bool(Bool)
        case int(Int)
        case double(Double)
        case string(Template)
        case sequence([ParamNode])
        case mapping([(key: String, value: ParamNode)])
        /// A string whose references are already reported as wrong; it is not
        /// type checked again, so one mistake gives one error.
        case invalid
    }

    var kind: Kind
    var location: SourceLocation
    /// The scalar as written (empty for collections).
    var text: String
    /// Whether the scalar was quoted or a block scalar.
    var quoted: Bool
    /// Whether the scalar is a variable's value substituted whole; a string
    /// parameter then takes its text.
    var fromVariable = false
    /// Written as an integer too large for 64 bits (`kind` is then a string).
    var isOutOfRangeInteger = false

    /// "an integer", "a list", … for "expected X, got Y" messages.
    var kindDescription: String {
        if isOutOfRangeInteger { return YAMLScalar.describeOutOfRangeInteger(text) }
        return switch kind {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .sequence: "a list"
        case .mapping: "a mapping"
        case .invalid: "an invalid value"
        }
    }

    var isScalar: Bool {
        switch kind {
        case .sequence, .mapping: false
        default: true
        }
    }
}

/// Type checks `ParamNode`s against declared `ParamType`s.
struct ParamTypeChecker {
    /// The output kind of `${stage.output}`, or nil when the stage's type is
    /// unknown (already reported) and the kind cannot be checked.
    var outputKind: (_ stage: String, _ output: String) -> String?

    /// The checked value, or nil with diagnostics appended.
    func check(_ node: ParamNode, against type: ParamType, into diagnostics: inout [Diagnostic]) -> ParamValue? {
        if case .invalid = node.kind { return nil }
        switch type {
        case .any:
            return anyValue(node)
        case .int:
            if case .int(let i) = node.kind { return ParamValue(.int(i), at: node.location) }
            diagnostics.append(mismatch(node, expected: type, hint: unquoteHint(node, number: Int(node.text) != nil)))
            return nil
        case .number:
            switch node.kind {
            case .int(let i): return ParamValue(.int(i), at: node.location)
            case .double(let d): return ParamValue(.double(d), at: node.location)
            default:
                diagnostics.append(mismatch(node, expected: type, hint: unquoteHint(node, number: Double(node.text) != nil)))
                return nil
            }
        case .bool:
            if case .bool(let b) = node.kind { return ParamValue(.bool(b), at: node.location) }
            diagnostics.append(mismatch(node, expected: type, hint: unquoteHint(node, number: node.text == "true" || node.text == "false")))
            return nil
        case .string, .path:
            if case .string(let template) = node.kind { return ParamValue(.string(template), at: node.location) }
            if node.fromVariable {
                switch node.kind {
                case .int, .double, .bool: return ParamValue(.string(Template(literal: node.text)), at: node.location)
                default: break
                }
            }
            diagnostics.append(mismatch(node, expected: type, hint: quoteHint(node)))
            return nil
        case .artifact(let kind):
            return artifact(node, kinds: [kind], type: type, into: &diagnostics)
        case .enumeration(let cases):
            guard case .string(let template) = node.kind else {
                diagnostics.append(mismatch(node, expected: type, hint: quoteHint(node)))
                return nil
            }
            guard template.references.isEmpty, cases.contains(node.text) else {
                diagnostics.append(Diagnostic(
                    "expected one of \(type), got \"\(node.text)\"", at: node.location,
                    hint: Suggestion.hint(for: node.text, in: cases)))
                return nil
            }
            return ParamValue(.string(template), at: node.location)
        case .array(let element):
            guard case .sequence(let items) = node.kind else {
                diagnostics.append(mismatch(node, expected: type, hint: nil))
                return nil
            }
            var values: [ParamValue] = []
            var failed = false
            for item in items {
                if let value = check(item, against: element, into: &diagnostics) { values.append(value) } else { failed = true }
            }
            return failed ? nil : ParamValue(.array(values), at: node.location)
        case .map(let element):
            guard case .mapping(let entries) = node.kind else {
                diagnostics.append(mismatch(node, expected: type, hint: nil))
                return nil
            }
            var fields: OrderedDictionary<String, ParamValue> = [:]
            var failed = false
            for entry in entries {
                if let value = check(entry.value, against: element, into: &diagnostics) { fields[entry.key] = value } else { failed = true }
            }
            return failed ? nil : ParamValue(.object(fields), at: node.location)
        case .oneOf(let alternatives):
            return oneOf(node, alternatives, type: type, into: &diagnostics)
        case .download:
            return download(node, into: &diagnostics)
        }
    }

    static let downloadKeys = ["url", "sha256", "files"]

    /// `{url: http(s)://…, sha256: 64 hex digits, files: any}`; `url` may use
    /// `${env.…}` (a mirror), `sha256` must be written out: it is the pin.
    private func download(_ node: ParamNode, into diagnostics: inout [Diagnostic]) -> ParamValue? {
        let example = "write `{url: https://example.org/data.zip, sha256: <64 hex digits>}`"
        guard case .mapping(let entries) = node.kind else {
            diagnostics.append(mismatch(node, expected: .download, hint: example))
            return nil
        }
        var fields: OrderedDictionary<String, ParamValue> = [:]
        var failed = false
        for entry in entries {
            guard Self.downloadKeys.contains(entry.key) else {
                diagnostics.append(Diagnostic(
                    "unknown key `\(entry.key)` in a download", at: entry.value.location,
                    hint: Suggestion.hint(for: entry.key, in: Self.downloadKeys) ?? "a download has `url`, `sha256` and optionally `files`"))
                failed = true
                continue
            }
            switch entry.key {
            case "url":
                guard case .string(let template) = entry.value.kind else {
                    diagnostics.append(mismatch(entry.value, expected: .string, hint: nil))
                    failed = true
                    continue
                }
                if template.references.isEmpty, !Self.isHTTPURL(entry.value.text) {
                    diagnostics.append(Diagnostic(
                        "`\(entry.value.text)` is not an http:// or https:// URL", at: entry.value.location,
                        hint: "downloads come over HTTP(S); for a local file use the stage's path parameters"))
                    failed = true
                    continue
                }
                fields["url"] = ParamValue(.string(template), at: entry.value.location)
            case "sha256":
                // A plain scalar of digits only reads as a number: its text as written is what counts.
                let literal = switch entry.value.kind {
                case .string(let template): template.references.isEmpty
                case .int, .double: true
                default: false
                }
                guard literal, Self.isSHA256(entry.value.text) else {
                    diagnostics.append(Diagnostic(
                        "`sha256` must be 64 hex digits, got \(entry.value.isScalar ? "\"\(entry.value.text)\"" : entry.value.kindDescription)",
                        at: entry.value.location,
                        hint: "the pin is the file's SHA-256 as `sha256sum FILE` prints it; it cannot come from a reference"))
                    failed = true
                    continue
                }
                fields["sha256"] = ParamValue(.string(Template(literal: entry.value.text.lowercased())), at: entry.value.location)
            default:
                guard let value = anyValue(entry.value) else {
                    failed = true
                    continue
                }
                fields[entry.key] = value
            }
        }
        for key in ["url", "sha256"] where !entries.contains(where: { $0.key == key }) {
            diagnostics.append(Diagnostic("a download needs `\(key)`", at: node.location, hint: example))
            failed = true
        }
        return failed ? nil : ParamValue(.object(fields), at: node.location)
    }

    static func isSHA256(_ text: String) -> Bool {
        text.utf8.count == 64 && text.allSatisfy(\.isHexDigit)
    }

    static func isHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), let url = URL(string: text) else { return false }
        return url.host.map { !$0.isEmpty } ?? false
    }

    /// The first alternative that fits. When none fits and exactly one has the
    /// right shape (a list for `[T]`, a scalar for `string`), its own errors
    /// are the useful ones; otherwise the error lists the alternatives.
    /// Alternatives that are all artifact kinds are one check: a reference
    /// to an output of any of those kinds.
    private func oneOf(_ node: ParamNode, _ alternatives: [ParamType], type: ParamType, into diagnostics: inout [Diagnostic]) -> ParamValue? {
        let kinds = alternatives.compactMap { alternative -> String? in
            if case .artifact(let kind) = alternative { kind } else { nil }
        }
        if kinds.count == alternatives.count, !kinds.contains("any") {
            return artifact(node, kinds: kinds, type: type, into: &diagnostics)
        }
        var attempts: [[Diagnostic]] = []
        for alternative in alternatives {
            var scratch: [Diagnostic] = []
            if let value = check(node, against: alternative, into: &scratch), scratch.isEmpty { return value }
            attempts.append(scratch)
        }
        let shaped = alternatives.indices.filter { Self.shapeFits(node, alternatives[$0]) }
        if shaped.count == 1 {
            diagnostics += attempts[shaped[0]]
        } else {
            diagnostics.append(Diagnostic("expected one of: \(type), got \(node.kindDescription)", at: node.location))
        }
        return nil
    }

    private static func shapeFits(_ node: ParamNode, _ type: ParamType) -> Bool {
        switch (type, node.kind) {
        case (.any, _): true
        case (.oneOf(let types), _): types.contains { shapeFits(node, $0) }
        case (.array, .sequence), (.map, .mapping), (.download, .mapping): true
        case (.array, _), (.map, _), (.download, _): false
        default: node.isScalar
        }
    }

    /// A reference to an output of one of `kinds` ("any": of every kind).
    private func artifact(_ node: ParamNode, kinds: [String], type: ParamType, into diagnostics: inout [Diagnostic]) -> ParamValue? {
        let example = "write a reference to an upstream stage's output, such as `${teacher.model}`"
        guard case .string(let template) = node.kind else {
            diagnostics.append(mismatch(node, expected: type, hint: example))
            return nil
        }
        let quoted = kinds.map { "`\($0)`" }
        let wanted = kinds.contains("any")
            ? "an artifact"
            : "a \(quoted.count > 1 ? quoted.dropLast().joined(separator: ", ") + " or " + (quoted.last ?? "") : quoted.joined()) artifact"
        guard template.parts.count == 1, case .reference(.stageOutput(let stage, let output)) = template.parts[0] else {
            diagnostics.append(Diagnostic(
                "expected exactly one stage output reference (\(wanted)), got \"\(node.text)\"",
                at: node.location, hint: example))
            return nil
        }
        if !kinds.contains("any"), let actual = outputKind(stage, output), !kinds.contains(actual) {
            diagnostics.append(Diagnostic(
                "expected \(wanted), but `${\(stage).\(output)}` is a `\(actual)`", at: node.location))
            return nil
        }
        return ParamValue(.string(template), at: node.location)
    }

    private func anyValue(_ node: ParamNode) -> ParamValue? {
        switch node.kind {
        case .invalid: return nil
        case .null: return ParamValue(.null, at: node.location)
        case .bool(let b): return ParamValue(.bool(b), at: node.location)
        case .int(let i): return ParamValue(.int(i), at: node.location)
        case .double(let d): return ParamValue(.double(d), at: node.location)
        case .string(let t): return ParamValue(.string(t), at: node.location)
        case .sequence(let items):
            var values: [ParamValue] = []
            for item in items {
                guard let value = anyValue(item) else { return nil }
                values.append(value)
            }
            return ParamValue(.array(values), at: node.location)
        case .mapping(let entries):
            var fields: OrderedDictionary<String, ParamValue> = [:]
            for entry in entries {
                guard let value = anyValue(entry.value) else { return nil }
                fields[entry.key] = value
            }
            return ParamValue(.object(fields), at: node.location)
        }
    }

    private func mismatch(_ node: ParamNode, expected type: ParamType, hint: String?) -> Diagnostic {
        Diagnostic("expected \(Self.phrase(for: type)), got \(node.kindDescription)", at: node.location, hint: hint)
    }

    /// "write it in quotes" for a plain number or boolean where a string belongs.
    private func quoteHint(_ node: ParamNode) -> String? {
        switch node.kind {
        case .bool, .int, .double: "write it in quotes, \"\(node.text)\", to pass it as a string"
        default: nil
        }
    }

    /// "remove the quotes" for a quoted number where a number belongs.
    private func unquoteHint(_ node: ParamNode, number: Bool) -> String? {
        guard case .string = node.kind, node.quoted, number else { return nil }
        return "remove the quotes: a quoted value is a string"
    }

    /// "an integer", "a list of [path]", … for messages.
    static func phrase(for type: ParamType) -> String {
        switch type {
        case .string: "a string"
        case .int: "an integer"
        case .number: "a number"
        case .bool: "a boolean"
        case .path: "a path (a string)"
        case .download: "a download (a mapping with `url` and `sha256`)"
        case .artifact(let kind): kind == "any" ? "a stage output reference" : "a reference to a `\(kind)` output"
        case .array: "a list (\(type))"
        case .map: "a mapping (\(type))"
        case .oneOf: "one of: \(type)"
        case .enumeration: "one of \(type)"
        case .any: "any value"
        }
    }
}
