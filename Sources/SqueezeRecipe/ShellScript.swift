import SqueezeSupport
/// A `shell: true` script whose substituted values never become part of its
/// text.
///
/// Every reference and every variable value in the script is passed to the
/// shell as an environment variable (`SQUEEZE_ARG_1`, `SQUEEZE_ARG_2`, …),
/// and the script names that variable in the form that is one intact word
/// where it stands: `"${SQUEEZE_ARG_1}"` outside quotes, `${SQUEEZE_ARG_1}`
/// inside double quotes and in a here-document. The shell never parses the
/// result of an expansion again, so a value such as `$(touch PWNED)`, `";
/// touch PWNED; "` or a backquote stays data in every quoting context.
///
/// Places where an expansion cannot deliver the value as written are refused
/// when the recipe is loaded: inside single quotes (the shell expands nothing
/// there, and such text is usually code for another program, such as `sh -c
/// '…'` or `python -c '…'`), inside backquotes, shell arithmetic (bash
/// evaluates a variable's value there as an expression, commands included),
/// a shell `${…}` expansion, a here-document with a quoted delimiter, right
/// after a backslash, or as a here-document delimiter.
public struct ShellScript: Sendable, Hashable, Codable {
    /// The script, with `${SQUEEZE_ARG_n}` where the template had values.
    public var text: String
    /// `SQUEEZE_ARG_n` → the value it stands for.
    public var environment: [String: String]

    public init(text: String, environment: [String: String]) {
        self.text = text
        self.environment = environment
    }

    /// The prefix of the environment variables that carry values.
    public static let variablePrefix = "SQUEEZE_ARG_"

    /// Renders `template` for the shell: each reference through `lookup`,
    /// each `.value` part as it is, all of them as environment variables.
    public init(_ template: Template, lookup: (Reference) throws -> String) throws {
        var lexer = ShellLexer()
        var text = ""
        var environment: [String: String] = [:]
        for part in template.parts {
            let value: String
            switch part {
            case .literal(let literal):
                lexer.consume(literal)
                text += literal
                continue
            case .value(let data): value = data
            case .reference(let reference): value = try lookup(reference)
            }
            let name = "\(Self.variablePrefix)\(environment.count + 1)"
            switch lexer.placement {
            case .word: text += "\"${\(name)}\""
            case .insideDoubleQuotes: text += "${\(name)}"
            case .refused(let refusal): throw refusal
            }
            lexer.consumeExpansion()
            environment[name] = value
        }
        self.init(text: text, environment: environment)
    }

    /// The script as a resolved parameter value: its text alone when nothing
    /// is substituted (as written), otherwise `{text, environment}`, which
    /// decodes back into a `ShellScript`. Both are part of the stage's key.
    public var parameterValue: Value {
        guard !environment.isEmpty else { return .string(text) }
        return .object([
            CodingKeys.text.stringValue: .string(text),
            CodingKeys.environment.stringValue: .object(environment.mapValues(Value.string)),
        ])
    }

    /// Why a value cannot stand where the template puts it.
    public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        /// "inside single quotes, where the shell expands nothing".
        public var place: String
        public var hint: String
        /// The line of the script, counted from 1.
        public var line: Int

        public var description: String { "a value cannot be substituted \(place) (line \(line) of the script)" }
    }

    /// For each value or reference of `parts`, in order, why it cannot stand
    /// there, or nil when it can.
    public static func refusals(in parts: [Template.Part]) -> [Refusal?] {
        var lexer = ShellLexer()
        var result: [Refusal?] = []
        for part in parts {
            if case .literal(let literal) = part {
                lexer.consume(literal)
                continue
            }
            if case .refused(let refusal) = lexer.placement {
                result.append(refusal)
            } else {
                result.append(nil)
            }
            lexer.consumeExpansion()
        }
        return result
    }
}

/// Follows POSIX shell quoting through a script, far enough to tell how an
/// expansion inserted at the current position is quoted.
///
/// It does not need to be a full parser to keep values safe: the script
/// never holds a value, only a variable's name, so a misjudged position can
/// at worst split a value into words. Only code that evaluates a value on
/// purpose runs it: `eval`, or bash arithmetic such as `[[ $a -eq $b ]]`.
struct ShellLexer {
    enum Placement {
        /// Outside quotes (or in a comment): `"${NAME}"`.
        case word
        /// In double quotes or an expanding here-document: `${NAME}`.
        case insideDoubleQuotes
        case refused(ShellScript.Refusal)
    }

    private enum Frame: Equatable {
        /// The script itself, or `$(…)` with its open parentheses.
        case command(parentheses: Int)
        case doubleQuoted
        case singleQuoted
        /// `$'…'`, where backslash escapes.
        case dollarSingleQuoted
        case backquoted
        case arithmetic(parentheses: Int)
        case parameter(braces: Int)
    }

    private struct HereDocument {
        var delimiter = ""
        var stripsTabs = false
        var expands = true
    }

    private var frames: [Frame] = [.command(parentheses: 0)]
    private var escaped = false
    private var inComment = false
    private var atWordStart = true
    private var line = 1
    /// The word after `<<`, while it is being read.
    private var delimiter: HereDocument?
    /// Here-documents whose bodies start at the next newline.
    private var pendingHereDocuments: [HereDocument] = []
    /// The here-document whose body is being read, and its current line.
    private var body: HereDocument?
    private var bodyLine = ""

    var placement: Placement {
        func refuse(_ place: String, _ hint: String) -> Placement {
            .refused(ShellScript.Refusal(place: place, hint: hint, line: line))
        }
        let outside = "put the reference outside the quotes (`'text '${vars.x}`) or in double quotes (`\"text ${vars.x}\"`)"
        if let body {
            return body.expands
                ? .insideDoubleQuotes
                : refuse("in a here-document with a quoted delimiter, where the shell expands nothing", "unquote the delimiter (`<<EOF`)")
        }
        if delimiter != nil {
            return refuse("as a here-document delimiter", "write the delimiter literally, such as `<<EOF`")
        }
        if escaped {
            return refuse("right after a backslash", "remove the backslash; the value arrives as one word anyway")
        }
        switch frames.last ?? .command(parentheses: 0) {
        case .command: return .word
        case .doubleQuoted: return .insideDoubleQuotes
        case .singleQuoted, .dollarSingleQuoted:
            return refuse(
                "inside single quotes, where the shell expands nothing",
                "\(outside); to hand it to `sh -c '…'` or another program's code, pass it as an argument (`sh -c 'echo \"$1\"' sh ${vars.x}`) instead of pasting it into the code")
        case .backquoted:
            return refuse("inside backquotes", "use `$(…)` for command substitution")
        case .arithmetic:
            return refuse(
                "inside shell arithmetic (`$((…))` or `((…))`), where the shell evaluates it as an expression",
                "assign it to a shell variable first and check it is a number, or use a number variable")
        case .parameter:
            return refuse("inside a shell `${…}` expansion", "assign it to a shell variable first (`v=${vars.x}`)")
        }
    }

    /// An expansion was inserted here: it is part of the current word.
    mutating func consumeExpansion() {
        // A here-document line holding an expansion is never its delimiter.
        if body != nil { bodyLine += "$" }
        atWordStart = false
        escaped = false
    }

    mutating func consume(_ text: String) {
        let characters = Array(text)
        var index = 0
        while index < characters.count {
            index += step(characters, at: index)
        }
    }

    /// Consumes the character at `index` (and what it starts); returns how many were consumed.
    private mutating func step(_ characters: [Character], at index: Int) -> Int {
        let character = characters[index]
        let next: Character? = index + 1 < characters.count ? characters[index + 1] : nil
        let afterNext: Character? = index + 2 < characters.count ? characters[index + 2] : nil
        if character == "\n" { line += 1 }

        if let document = body {
            if character == "\n" {
                let candidate = document.stripsTabs ? String(bodyLine.drop { $0 == "\t" }) : bodyLine
                bodyLine = ""
                if candidate == document.delimiter {
                    body = pendingHereDocuments.isEmpty ? nil : pendingHereDocuments.removeFirst()
                }
            } else {
                bodyLine.append(character)
            }
            return 1
        }
        if var reading = delimiter {
            if character == "'" || character == "\"" || character == "\\" {
                reading.expands = false
                delimiter = reading
                return 1
            }
            let endsWord = character.isWhitespace || ";&|<>()".contains(character)
            if !endsWord {
                reading.delimiter.append(character)
                delimiter = reading
                return 1
            }
            if reading.delimiter.isEmpty, character == " " || character == "\t" { return 1 }
            // The word is complete; the character that ended it is ordinary script text.
            pendingHereDocuments.append(reading)
            delimiter = nil
        }
        if escaped {
            escaped = false
            atWordStart = false
            return 1
        }

        switch frames.last ?? .command(parentheses: 0) {
        case .singleQuoted:
            if character == "'" { frames.removeLast() }
            return 1
        case .dollarSingleQuoted:
            if character == "\\" { escaped = true } else if character == "'" { frames.removeLast() }
            return 1
        case .backquoted:
            if character == "\\" { escaped = true } else if character == "`" { frames.removeLast() }
            return 1
        case .arithmetic(let parentheses):
            if character == "(" {
                frames[frames.count - 1] = .arithmetic(parentheses: parentheses + 1)
            } else if character == ")" {
                if parentheses > 0 {
                    frames[frames.count - 1] = .arithmetic(parentheses: parentheses - 1)
                } else {
                    frames.removeLast()
                    return next == ")" ? 2 : 1
                }
            }
            return 1
        case .parameter(let braces):
            if character == "{" {
                frames[frames.count - 1] = .parameter(braces: braces + 1)
            } else if character == "}" {
                if braces > 1 { frames[frames.count - 1] = .parameter(braces: braces - 1) } else { frames.removeLast() }
            }
            return 1
        case .doubleQuoted:
            switch character {
            case "\\": escaped = true
            case "\"": frames.removeLast()
            case "`": frames.append(.backquoted)
            case "$": return openExpansion(next: next, afterNext: afterNext, allowsDollarQuote: false)
            default: break
            }
            return 1
        case .command(let parentheses):
            if inComment {
                guard character == "\n" else { return 1 }
                inComment = false
            }
            defer { atWordStart = character.isWhitespace || ";&|()<>".contains(character) }
            switch character {
            case "\\": escaped = true
            case "'": frames.append(.singleQuoted)
            case "\"": frames.append(.doubleQuoted)
            case "`": frames.append(.backquoted)
            case "#" where atWordStart: inComment = true
            case "$": return openExpansion(next: next, afterNext: afterNext, allowsDollarQuote: true)
            case "(" where next == "(" && atWordStart:
                frames.append(.arithmetic(parentheses: 0))  // bash's `((…))`
                return 2
            case "(": frames[frames.count - 1] = .command(parentheses: parentheses + 1)
            case ")":
                if parentheses > 0 {
                    frames[frames.count - 1] = .command(parentheses: parentheses - 1)
                } else if frames.count > 1 {
                    frames.removeLast()
                }
            case "<" where next == "<" && afterNext == "<":
                return 3  // a here-string, `<<<word`
            case "<" where next == "<":
                delimiter = HereDocument(stripsTabs: afterNext == "-")
                return afterNext == "-" ? 3 : 2
            case "\n":
                if !pendingHereDocuments.isEmpty { body = pendingHereDocuments.removeFirst() }
            default: break
            }
            return 1
        }
    }

    /// `$` followed by `(`, `((`, `{` or (outside double quotes) `'`.
    private mutating func openExpansion(next: Character?, afterNext: Character?, allowsDollarQuote: Bool) -> Int {
        atWordStart = false
        switch next {
        case "(" where afterNext == "(":
            frames.append(.arithmetic(parentheses: 0))
            return 3
        case "(":
            frames.append(.command(parentheses: 0))
            return 2
        case "{":
            frames.append(.parameter(braces: 1))
            return 2
        case "'" where allowsDollarQuote:
            frames.append(.dollarSingleQuoted)
            return 2
        default:
            return 1
        }
    }
}
