import SqueezeYAML

/// A `--set PATH=VALUE` flag, applied to the recipe's YAML tree before validation.
///
/// Settable paths: `vars.NAME`, `stages.ID.with.PARAM[.KEY…]`, `stages.ID.backend`,
/// `seed` and `backend`. VALUE is YAML flow text (`3`, `0.5`, `[a, b]`, `{k: v}`).
///
/// How errors caused by an override are reported: a diagnostic has no source
/// location (`location == nil`) and its message starts with the flag itself,
/// as in ``"`--set stages.teacher.with.lr=abc`: expected a number, got a string"``.
/// The values an override puts into the recipe carry locations in a pseudo-file
/// named `--set ARGUMENT` (line and column within VALUE), so later errors about
/// them, such as the engine's, still name the flag.
public struct Override: Sendable, Hashable {
    /// What an override sets.
    public enum Target: Sendable, Hashable {
        case variable(String)
        /// `stages.ID.with.PARAM[.KEY…]`; `path` starts with the parameter name.
        case parameter(stage: String, path: [String])
        case stageBackend(String)
        case seed
        case backend
        /// `--matrix vars.NAME=V1,V2`: the values `matrix:` sweeps `NAME` over.
        case matrixAxis(String)
    }

    public var path: [String]
    public var valueText: String
    /// The flag's argument as given: `stages.teacher.with.lr=1e-4`.
    public var argument: String
    /// `--set`, or `--matrix` for a matrix axis.
    public var flag = "--set"

    /// The pseudo-file name of values parsed from this override; also how
    /// messages about it name it.
    public var sourceName: String { "\(flag) \(argument)" }

    /// What this override sets, or nil when `path` is not settable.
    public var target: Target? {
        if flag == Self.matrixFlag {
            return path.count == 2 && path[0] == "vars" ? .matrixAxis(path[1]) : nil
        }
        return switch path.first {
        case "vars" where path.count == 2: .variable(path[1])
        case "stages" where path.count >= 4 && path[2] == "with": .parameter(stage: path[1], path: Array(path.dropFirst(3)))
        case "stages" where path.count == 3 && path[2] == "backend": .stageBackend(path[1])
        case "seed" where path.count == 1: .seed
        case "backend" where path.count == 1: .backend
        default: nil
        }
    }

    static let matrixFlag = "--matrix"

    /// Parses a `--matrix vars.NAME=V1,V2,…` argument: the values are YAML flow
    /// items (`0.6,0.8`, `mse,"a,b"`), read as the list `[V1,V2,…]`.
    public static func parseMatrix(_ argument: String) throws(Diagnostic) -> Override {
        func failure(_ message: String) -> Diagnostic {
            Diagnostic("`\(matrixFlag) \(argument)`: \(message)", hint: "write `\(matrixFlag) vars.NAME=V1,V2,…`, such as `\(matrixFlag) vars.sparsity=0.6,0.8`")
        }
        guard let equals = argument.firstIndex(of: "=") else { throw failure("expected vars.NAME=V1,V2,…") }
        let path = argument[..<equals].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let values = String(argument[argument.index(after: equals)...])
        guard path.count == 2, path[0] == "vars", !path[1].isEmpty else {
            throw failure("only variables are swept: `vars.NAME`")
        }
        return Override(path: path, valueText: "[\(values)]", argument: argument, flag: matrixFlag)
    }

    /// Parses `PATH=VALUE`, splitting at the first `=`.
    public static func parse(_ argument: String) throws(Diagnostic) -> Override {
        func failure(_ message: String, hint: String? = nil) -> Diagnostic {
            Diagnostic("`--set \(argument)`: \(message)", hint: hint)
        }
        let example = "for example `--set vars.epochs=3` or `--set stages.teacher.with.lr=1e-4`"
        guard let equals = argument.firstIndex(of: "=") else {
            throw failure("expected PATH=VALUE", hint: example)
        }
        let pathText = String(argument[..<equals])
        let valueText = String(argument[argument.index(after: equals)...])
        guard !pathText.isEmpty else {
            throw failure("the path before `=` is empty", hint: example)
        }
        let path = pathText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if path.contains(where: \.isEmpty) {
            throw failure("the path `\(pathText)` has an empty component")
        }
        let override = Override(path: path, valueText: valueText, argument: argument)
        if override.target != nil { return override }

        let settable = "settable paths are `vars.NAME`, `stages.ID.with.PARAM`, `stages.ID.backend`, `seed` and `backend`"
        switch path[0] {
        case "vars":
            throw failure("a variable is set whole, as `vars.NAME=VALUE`", hint: settable)
        case "stages":
            if path.count >= 3, let hint = Suggestion.hint(for: path[2], in: ["with", "backend"]) {
                throw failure("cannot set `\(pathText)`", hint: hint)
            }
            throw failure("cannot set `\(pathText)`", hint: settable)
        case "seed", "backend":
            throw failure("`\(path[0])` has no fields to set", hint: "write `--set \(path[0])=VALUE`")
        default:
            let hint = Suggestion.hint(for: path[0], in: ["vars", "stages", "seed", "backend"])
            throw failure("cannot set `\(pathText)`: unknown root `\(path[0])`", hint: hint ?? settable)
        }
    }
}
