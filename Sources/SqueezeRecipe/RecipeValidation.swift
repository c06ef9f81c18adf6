import Collections
import SqueezeYAML

/// One pass of recipe validation: collects diagnostics and, when there are
/// none, builds the `Recipe`.
struct RecipeValidation {
    static let topLevelKeys = ["version", "name", "description", "backend", "seed", "vars", "profiles", "matrix", "stages"]
    static let stageKeys = ["uses", "with", "needs", "backend", "resources", "retries", "description"]
    static let supportedVersion = 1

    let file: String
    let directory: String
    let stageTypes: [String: StageTypeDescriptor]
    let environment: [String: String]
    let backends: RecipeBackends

    var diagnostics: [Diagnostic] = []
    /// Diagnostics of severity `warning`: reported, but the recipe is valid.
    var warnings: [Diagnostic] = []
    /// Variables after overrides, as YAML so they substitute with their types.
    var variables: OrderedDictionary<String, YAMLNode> = [:]
    /// Variables whose definition already has an error; uses stay quiet.
    var brokenVariables: Set<String> = []
    /// Where a whole `${vars.x}` was replaced by a scalar variable's value.
    /// There a string parameter takes the variable's text (`"${vars.n}"` in an
    /// argument list is the word `3`), while typed parameters take its type.
    var variableScalarLocations: Set<SourceLocation> = []
    /// Every stage id in source order, with its type when `uses` names a known one.
    var stageIDs: OrderedDictionary<String, StageTypeDescriptor?> = [:]
    /// The variables each stage's body names as `${vars.NAME}`.
    var variableUses: [String: Set<String>] = [:]
    /// Every variable some profile sets.
    var profileVariables: Set<String> = []
    /// The combinations of `matrix:`, when the recipe sweeps.
    var matrixCombinations: [OrderedDictionary<String, YAMLNode>]?

    init(file: String, directory: String, stageTypes: [String: StageTypeDescriptor], environment: [String: String], backends: RecipeBackends) {
        self.file = file
        self.directory = directory
        self.stageTypes = stageTypes
        self.environment = environment
        self.backends = backends
    }

    mutating func error(_ message: String, at location: SourceLocation?, hint: String? = nil) {
        diagnostics.append(Diagnostic(message, at: location, hint: hint))
    }

    // MARK: - Top level

    /// Validates the recipe; `binding` gives swept variables the values of
    /// one matrix combination (then `matrix:` itself is not checked again).
    mutating func run(root: YAMLNode?, overrides: [Override], binding: OrderedDictionary<String, YAMLNode>? = nil) -> Recipe? {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard var root else {
            error("the recipe is empty", at: start, hint: "a recipe has at least `version: 1`, `name:` and `stages:`")
            return nil
        }
        guard root.entries != nil else {
            error(
                "a recipe must be a mapping with `version`, `name` and `stages`, got \(Self.describe(root))", at: root.location,
                hint: "start the file with `version: 1`")
            return nil
        }
        // A recipe for another version would only give noise after this.
        guard let version = checkVersion(root["version"], root: root) else { return nil }
        for override in overrides {
            apply(override, to: &root)
        }
        reportNonFiniteNumbers(in: root)
        let setVariables = Set(overrides.compactMap { override -> String? in
            if case .variable(let name) = override.target { name } else { nil }
        })
        if let binding, var vars = root["vars"] {
            for (name, value) in binding { vars.setValue(value, forKey: name, keyLocation: value.location) }
            root.setValue(vars, forKey: "vars", keyLocation: root.location)
        }
        let profile = applyProfile(to: &root, explicit: setVariables.union(binding?.keys ?? []))

        var fields: [String: YAMLNode.Entry] = [:]
        for entry in root.entries ?? [] {
            guard let key = mappingKey(entry.key) else { continue }
            if Self.topLevelKeys.contains(key) {
                fields[key] = entry
            } else {
                error(
                    "unknown key `\(key)`", at: entry.key.location,
                    hint: Suggestion.hint(for: key, in: Self.topLevelKeys)
                        ?? "top-level keys are \(Self.list(Self.topLevelKeys))")
            }
        }

        let name = checkName(fields["name"], root: root)
        let description = fields["description"].flatMap { stringValue($0.value, what: "description") }
        var backend = backends.defaultID
        if let node = fields["backend"]?.value, let value = backendValue(node) { backend = value }
        var seed = 0
        if let node = fields["seed"]?.value, let value = seedValue(node) { seed = value }
        if let entry = fields["vars"] { collectVariables(entry.value) }
        if binding == nil, let entry = fields["matrix"] {
            matrixCombinations = checkMatrix(entry, vars: fields["vars"]?.value, setVariables: setVariables)
        }

        guard let stagesEntry = fields["stages"] else {
            error("missing required key `stages`", at: root.location, hint: "add `stages:` with at least one stage")
            return nil
        }
        let stages = checkStages(stagesEntry, recipeBackend: backend)
        guard diagnostics.isEmpty, let name else { return nil }

        var recipe = Recipe(
            file: file, directory: directory, version: version, name: name, backend: backend, seed: seed,
            vars: variables.mapValues { RecipeJSON.value(of: $0) }, stages: stages)
        recipe.description = description
        recipe.profile = profile
        recipe.warnings = Self.ordered(warnings)
        return recipe
    }

    /// The version, or nil when it is one this squeeze cannot read (then
    /// nothing else is checked: a newer recipe would only give noise).
    private mutating func checkVersion(_ node: YAMLNode?, root: YAMLNode) -> Int? {
        guard let node else {
            error("missing required key `version`", at: root.location, hint: "add `version: \(Self.supportedVersion)`")
            return Self.supportedVersion
        }
        switch node.kind {
        case .scalar:
            if case .int(let version) = YAMLScalar.resolve(node) {
                if version == Self.supportedVersion { return version }
                error(
                    "unsupported recipe version \(version); this squeeze reads version \(Self.supportedVersion)", at: node.location,
                    hint: version > Self.supportedVersion ? "upgrade squeeze to read this recipe" : nil)
                return nil
            }
        default: break
        }
        error(
            "`version` must be the integer \(Self.supportedVersion), got \(Self.describe(node))", at: node.location,
            hint: "write `version: \(Self.supportedVersion)`")
        return Self.supportedVersion
    }

    private mutating func checkName(_ entry: YAMLNode.Entry?, root: YAMLNode) -> String? {
        guard let node = entry?.value else {
            error("missing required key `name`", at: root.location, hint: "add a name such as `name: sst2-distill`")
            return nil
        }
        guard let name = stringValue(node, what: "name") else { return nil }
        if !Names.isRecipeName(name) {
            error(
                "invalid recipe name `\(name)`", at: node.location,
                hint: "a name starts with a letter or digit and has only letters, digits, `.`, `_` and `-`")
            return nil
        }
        if name.count > Names.maxRecipeNameLength {
            error("the recipe name is \(name.count) characters long; the limit is \(Names.maxRecipeNameLength)", at: node.location)
            return nil
        }
        return name
    }

    /// A backend name from `backends`, or nil (reported).
    mutating func backendValue(_ node: YAMLNode) -> String? {
        guard let backend = stringValue(node, what: "backend") else { return nil }
        guard backends.contains(backend) else {
            let known = backends.ids
            error(
                "unknown backend `\(backend)`", at: node.location,
                hint: Suggestion.hint(for: backend, in: known) ?? "available backends: \(Self.list(known))")
            return nil
        }
        return backend
    }

    private mutating func seedValue(_ node: YAMLNode) -> Int? {
        if case .scalar = node.kind, case .int(let seed) = YAMLScalar.resolve(node) {
            if seed >= 0 { return seed }
            error("`seed` must be a non-negative integer, got \(seed)", at: node.location)
            return nil
        }
        error("`seed` must be a non-negative integer, got \(Self.describe(node))", at: node.location)
        return nil
    }

    // MARK: - Variables

    private mutating func collectVariables(_ node: YAMLNode) {
        if case .scalar = node.kind, case .null = YAMLScalar.resolve(node) { return }
        guard let entries = node.entries else {
            error("`vars` must be a mapping of names to values, got \(Self.describe(node))", at: node.location)
            return
        }
        for entry in entries {
            guard let name = mappingKey(entry.key) else { continue }
            guard Names.isIdentifier(name) else {
                error(
                    "invalid variable name `\(name)`", at: entry.key.location,
                    hint: "variable names match \(Names.identifierPattern)")
                continue
            }
            variables[name] = entry.value
            if !checkVariableTemplates(entry.value, variable: name) {
                brokenVariables.insert(name)
            }
        }
    }

    /// Checks the `${…}` syntax inside a variable's value. Other references are
    /// checked where the variable is used, since they depend on the stage.
    private mutating func checkVariableTemplates(_ node: YAMLNode, variable: String) -> Bool {
        switch node.kind {
        case .scalar:
            guard case .string(let text) = YAMLScalar.resolve(node) else { return true }
            let parts: [TemplateSyntax.Part]
            do {
                parts = try TemplateSyntax.parse(text)
            } catch {
                self.error(error.message, at: node.location, hint: error.hint)
                return false
            }
            var ok = true
            for case .reference(.variable, let written) in parts {
                error(
                    "variable `\(variable)` refers to another variable (`\(written)`)", at: node.location,
                    hint: "variables cannot refer to each other; write the value directly")
                ok = false
            }
            return ok
        case .sequence(let items):
            var ok = true
            for item in items where !checkVariableTemplates(item, variable: variable) { ok = false }
            return ok
        case .mapping(let entries):
            var ok = true
            for entry in entries where !checkVariableTemplates(entry.value, variable: variable) { ok = false }
            return ok
        }
    }

    // MARK: - Helpers

    /// Reports every number that is not finite (`.nan`, `.inf`, `-.inf`, or
    /// `1e400`, which overflows to infinity), in the file and in `--set` /
    /// `--matrix` values. Run records, cache keys and metrics are JSON, which
    /// has no such numbers, so they are refused here rather than failing a run.
    mutating func reportNonFiniteNumbers(in node: YAMLNode) {
        switch node.kind {
        case .scalar(let text, _):
            guard case .double(let value) = YAMLScalar.resolve(node), !value.isFinite else { return }
            let what = value.isNaN || text.lowercased().hasSuffix(".inf")
                ? "is not a finite number" : "is too large for a number (it would be infinite)"
            error(
                "`\(text)` \(what)", at: node.location,
                hint: "write a finite number (at most ±1.8e308), or quote it (\"\(text)\") if you mean the text")
        case .sequence(let items):
            for item in items { reportNonFiniteNumbers(in: item) }
        case .mapping(let entries):
            for entry in entries {
                reportNonFiniteNumbers(in: entry.key)
                reportNonFiniteNumbers(in: entry.value)
            }
        }
    }

    /// A mapping key's text; keys must be scalars.
    mutating func mappingKey(_ key: YAMLNode) -> String? {
        if let text = key.scalar { return text }
        error("a key must be a name, got \(Self.describe(key))", at: key.location)
        return nil
    }

    /// A string value, or nil with "`what` must be a string, got …".
    mutating func stringValue(_ node: YAMLNode, what: String) -> String? {
        if case .scalar = node.kind {
            let resolved = YAMLScalar.resolve(node)
            if case .string(let text) = resolved { return text }
            let quote: String? = switch resolved {
            case .bool, .int, .double: "write it in quotes, \"\(node.scalar ?? "")\", to use it as a string"
            default: nil
            }
            error("`\(what)` must be a string, got \(Self.describe(node))", at: node.location, hint: quote)
            return nil
        }
        error("`\(what)` must be a string, got \(Self.describe(node))", at: node.location)
        return nil
    }

    /// "an integer", "a list", … as in "expected X, got Y".
    static func describe(_ node: YAMLNode) -> String {
        switch node.kind {
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .scalar(let text, _):
            if YAMLScalar.isOutOfRangeInteger(node) { return YAMLScalar.describeOutOfRangeInteger(text) }
            switch YAMLScalar.resolve(node) {
            case .null: return "null"
            case .bool: return "a boolean"
            case .int: return "an integer"
            case .double: return "a number"
            case .string: return "a string"
            }
        }
    }

    /// "`a`, `b` and `c`".
    static func list(_ names: [String]) -> String {
        let quoted = names.map { "`\($0)`" }
        guard let last = quoted.last else { return "(none)" }
        if quoted.count == 1 { return last }
        return quoted.dropLast().joined(separator: ", ") + " and " + last
    }

    // MARK: - Final report

    /// The diagnostics as reported: override errors named by their flag and
    /// placed first, then the rest by position; exact duplicates dropped.
    func finalDiagnostics(overrides: [Override]) -> [Diagnostic] {
        let flags = Set(overrides.map(\.sourceName))
        var seen: Set<Diagnostic> = []
        var unique: [Diagnostic] = []
        for var diagnostic in diagnostics {
            if let location = diagnostic.location, flags.contains(location.file) {
                diagnostic = Diagnostic("`\(location.file)`: \(diagnostic.message)", hint: diagnostic.hint)
            }
            if seen.insert(diagnostic).inserted { unique.append(diagnostic) }
        }
        return Self.ordered(unique)
    }

    /// `diagnostics` by position (those without one first), otherwise in order.
    static func ordered(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        diagnostics.enumerated().sorted { a, b in
            switch (a.element.location, b.element.location) {
            case (nil, nil): return a.offset < b.offset
            case (nil, _): return true
            case (_, nil): return false
            case (let x?, let y?):
                if x.file != y.file { return x.file < y.file }
                if x.line != y.line { return x.line < y.line }
                if x.column != y.column { return x.column < y.column }
                return a.offset < b.offset
            }
        }.map(\.element)
    }
}

extension YAMLNode {
    /// The same tree with every node moved to `location`: a variable's value
    /// substituted at its use site reports errors where it is used.
    func relocated(to location: SourceLocation) -> YAMLNode {
        switch kind {
        case .scalar:
            return YAMLNode(kind, at: location, tag: tag)
        case .sequence(let items):
            return YAMLNode(.sequence(items.map { $0.relocated(to: location) }), at: location, tag: tag)
        case .mapping(let entries):
            return YAMLNode(
                .mapping(entries.map { Entry(key: $0.key.relocated(to: location), value: $0.value.relocated(to: location)) }),
                at: location, tag: tag)
        }
    }

    /// Replaces the value of `key` in a mapping, or appends the entry.
    mutating func setValue(_ value: YAMLNode, forKey key: String, keyLocation: SourceLocation) {
        guard case .mapping(var entries) = kind else { return }
        if let index = entries.firstIndex(where: { $0.key.scalar == key }) {
            entries[index].value = value
        } else {
            entries.append(Entry(key: YAMLNode(.scalar(key, .plain), at: keyLocation), value: value))
        }
        kind = .mapping(entries)
    }
}
