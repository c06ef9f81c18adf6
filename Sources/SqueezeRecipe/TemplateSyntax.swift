import SqueezeYAML

/// The `${…}` syntax of recipe strings, before variables are substituted.
///
/// A string is literal text with references in it: `${vars.NAME}`,
/// `${STAGE.OUTPUT}`, `${env.NAME}`, `${env.NAME:-fallback}`, `${out}` and
/// `${seed}`. `$${` is a literal `${`. Whether a reference names something that
/// exists is checked by the loader, which knows the stages and variables.
enum TemplateSyntax {
    /// A reference as written; `variable` never survives loading.
    enum WrittenReference: Sendable, Hashable {
        case variable(String)
        case reference(Reference)
    }

    enum Part: Sendable, Hashable {
        case literal(String)
        /// The reference and its source text (`${teacher.model}`).
        case reference(WrittenReference, text: String)
    }

    struct Failure: Error, Sendable, Hashable {
        var message: String
        var hint: String?
    }

    static let referenceForms = "references look like `${stage.output}`, `${vars.NAME}`, `${env.NAME}`, `${env.NAME:-default}`, `${out}` or `${seed}`"

    /// Splits `text` into literal text and references; adjacent literals are merged.
    static func parse(_ text: String) throws(Failure) -> [Part] {
        var parts: [Part] = []
        var literal = ""
        var index = text.startIndex

        func flushLiteral() {
            if !literal.isEmpty { parts.append(.literal(literal)) }
            literal = ""
        }

        while index < text.endIndex {
            let rest = text[index...]
            if rest.hasPrefix("$${") {
                literal += "${"
                index = text.index(index, offsetBy: 3)
            } else if rest.hasPrefix("${") {
                let bodyStart = text.index(index, offsetBy: 2)
                guard let close = text[bodyStart...].firstIndex(of: "}") else {
                    throw Failure(
                        message: "unclosed `${` in `\(text)`",
                        hint: "close the reference with `}`, or write `$${` for a literal `${`")
                }
                let body = String(text[bodyStart..<close])
                let written = String(text[index...close])
                let reference = try parseBody(body, written: written)
                flushLiteral()
                parts.append(.reference(reference, text: written))
                index = text.index(after: close)
            } else {
                literal.append(text[index])
                index = text.index(after: index)
            }
        }
        flushLiteral()
        return parts
    }

    private static func parseBody(_ body: String, written: String) throws(Failure) -> WrittenReference {
        if body.isEmpty {
            throw Failure(message: "empty reference `${}`", hint: referenceForms)
        }
        if body.contains("${") {
            throw Failure(message: "nested references are not supported: `\(written)`", hint: "a fallback is literal text, such as `${env.DATA:-data}`")
        }
        guard let dot = body.firstIndex(of: ".") else {
            switch body {
            case "out": return .reference(.outputDirectory)
            case "seed": return .reference(.seed)
            default:
                let hint = Suggestion.closest(to: body, in: ["out", "seed"]).map { "did you mean `${\($0)}`?" }
                throw Failure(
                    message: "unknown reference `\(written)`",
                    hint: hint ?? (Names.isStageID(body) ? "a stage output is written `${\(body).OUTPUT}`" : referenceForms))
            }
        }
        let head = String(body[..<dot])
        let rest = String(body[body.index(after: dot)...])
        switch head {
        case "vars":
            guard Names.isIdentifier(rest) else {
                throw Failure(message: "malformed variable reference `\(written)`", hint: "variable names match [A-Za-z_][A-Za-z0-9_]*")
            }
            return .variable(rest)
        case "env":
            let name: String
            let fallback: String?
            if let separator = rest.range(of: ":-") {
                name = String(rest[..<separator.lowerBound])
                fallback = String(rest[separator.upperBound...])
            } else {
                name = rest
                fallback = nil
            }
            guard Names.isIdentifier(name) else {
                throw Failure(
                    message: "malformed environment reference `\(written)`",
                    hint: "write `${env.NAME}` or `${env.NAME:-default}` with NAME matching [A-Za-z_][A-Za-z0-9_]*")
            }
            return .reference(.environment(name: name, fallback: fallback))
        default:
            guard Names.isStageID(head), Names.isIdentifier(rest) else {
                throw Failure(message: "malformed reference `\(written)`", hint: referenceForms)
            }
            return .reference(.stageOutput(stage: head, output: rest))
        }
    }
}

/// The lexical rules for names in a recipe.
enum Names {
    /// Names that cannot be stage ids because references use them as namespaces.
    static let reservedStageIDs: [String] = ["vars", "env", "out", "seed"]

    /// `[A-Za-z_][A-Za-z0-9_]*`: variables, environment variables, outputs.
    static func isIdentifier(_ text: String) -> Bool {
        matches(text, first: { isLetter($0) || $0 == "_" }, rest: { isLetter($0) || isDigit($0) || $0 == "_" })
    }

    /// `[A-Za-z_][A-Za-z0-9_-]*`: stage ids.
    static func isStageID(_ text: String) -> Bool {
        matches(text, first: { isLetter($0) || $0 == "_" }, rest: { isLetter($0) || isDigit($0) || $0 == "_" || $0 == "-" })
    }

    /// `[A-Za-z0-9][A-Za-z0-9._-]*`: recipe names.
    static func isRecipeName(_ text: String) -> Bool {
        matches(text, first: { isLetter($0) || isDigit($0) }, rest: { isLetter($0) || isDigit($0) || $0 == "." || $0 == "_" || $0 == "-" })
    }

    static let identifierPattern = "[A-Za-z_][A-Za-z0-9_]*"
    static let stageIDPattern = "[A-Za-z_][A-Za-z0-9_-]*"
    static let recipeNamePattern = "[A-Za-z0-9][A-Za-z0-9._-]*"
    static let maxRecipeNameLength = 64

    private static func matches(_ text: String, first: (Unicode.Scalar) -> Bool, rest: (Unicode.Scalar) -> Bool) -> Bool {
        var scalars = text.unicodeScalars.makeIterator()
        guard let head = scalars.next(), first(head) else { return false }
        while let scalar = scalars.next() {
            if !rest(scalar) { return false }
        }
        return true
    }

    private static func isLetter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
    private static func isDigit(_ c: Unicode.Scalar) -> Bool { ("0"..."9").contains(c) }
}
