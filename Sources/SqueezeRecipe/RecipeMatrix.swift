import Collections
import SqueezeSupport
import SqueezeYAML

/// A matrix sweep: the combinations of variable values a recipe runs with.
/// Stages that depend on a swept variable (directly or through another
/// stage's output) run once per combination of the swept variables they
/// depend on; the others run once and are shared.
public struct MatrixSweep: Sendable, Hashable {
    /// The swept variables, sorted by name.
    public var variables: [String]
    /// Every combination in expansion order, each giving a value to every swept variable.
    public var combinations: [OrderedDictionary<String, Value>]

    public init(variables: [String], combinations: [OrderedDictionary<String, Value>]) {
        self.variables = variables
        self.combinations = combinations
    }

    /// `name[a=1,b=x]` for `name` bound to `values` (sorted by variable name);
    /// just `name` when `values` is empty.
    public static func instanceID(_ name: String, _ values: OrderedDictionary<String, Value>) -> String {
        guard !values.isEmpty else { return name }
        let bindings = values.keys.sorted().map { key in "\(key)=\(values[key].map(text(of:)) ?? "")" }
        return "\(name)[\(bindings.joined(separator: ","))]"
    }

    /// A value as it appears in an instance id: a plain word as it is, anything
    /// else as JSON, so the string `"1"` and the number `1` stay distinct.
    static func text(of value: Value) -> String {
        guard case .string(let text) = value, isPlainWord(text) else { return value.canonicalJSON }
        return text
    }

    private static func isPlainWord(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.properties.isAlphabetic || first == "_",
              !["true", "false", "null"].contains(text) else { return false }
        return text.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-./:".unicodeScalars.contains($0) }
    }
}

/// `matrix:` after checking: values converted to their variables' types.
struct MatrixDefinition {
    static let keys = ["exclude", "include", "max_instances"]
    static let defaultMaxInstances = 64
    /// Beyond this many combinations before `exclude:` the product is not even enumerated.
    static let enumerationLimit = 1_000_000

    /// The swept variables and their values, in written order.
    var axes: OrderedDictionary<String, [YAMLNode]> = [:]
    var exclude: [OrderedDictionary<String, YAMLNode>] = []
    var include: [OrderedDictionary<String, YAMLNode>] = []
    var maxInstances = defaultMaxInstances
    /// Where `matrix:` is written; errors about the whole sweep point here.
    var location: SourceLocation
}

extension RecipeValidation {
    /// Checks `matrix:` against the declared variables and returns its
    /// combinations (each binding every swept variable), or nil when it is
    /// wrong (reported). `setVariables` are those given with `--set`, which
    /// cannot be swept at the same time.
    mutating func checkMatrix(
        _ entry: YAMLNode.Entry, vars: YAMLNode?, setVariables: Set<String>
    ) -> [OrderedDictionary<String, YAMLNode>]? {
        let node = entry.value
        guard let entries = node.entries else {
            error(
                "`matrix` must be a mapping of variable names to lists of values, got \(Self.describe(node))",
                at: node.location, hint: "write `matrix: { sparsity: [0.6, 0.8] }`")
            return nil
        }
        let errorsBefore = diagnostics.count
        let declared = vars?.entries ?? []
        let declaredNames = declared.compactMap(\.key.scalar)
        var definition = MatrixDefinition(location: entry.key.location)
        var excludeNode: YAMLNode?
        var includeNode: YAMLNode?
        for item in entries {
            guard let name = mappingKey(item.key) else { continue }
            switch name {
            case "exclude": excludeNode = item.value
            case "include": includeNode = item.value
            case "max_instances":
                if case .scalar = item.value.kind, case .int(let cap) = YAMLScalar.resolve(item.value), cap >= 1 {
                    definition.maxInstances = cap
                } else {
                    error("`max_instances` must be a positive integer, got \(Self.describe(item.value))", at: item.value.location)
                }
            default:
                guard let old = declaredVariable(name, at: item.key, declared: declared, names: declaredNames, what: "the matrix sweeps")
                else { continue }
                if setVariables.contains(name) {
                    error(
                        "variable `\(name)` is swept by `matrix:` and also given with `--set`", at: item.key.location,
                        hint: "narrow the sweep with `--matrix vars.\(name)=VALUE` instead of `--set`")
                    continue
                }
                guard let items = item.value.items else {
                    error(
                        "matrix variable `\(name)` must have a list of values, got \(Self.describe(item.value))", at: item.value.location,
                        hint: "write `\(name): [\(item.value.scalar ?? "VALUE"), …]`")
                    continue
                }
                guard !items.isEmpty else {
                    error(
                        "matrix variable `\(name)` has no values", at: item.value.location,
                        hint: "give at least one value, or remove `\(name)` from `matrix:`")
                    continue
                }
                var values: [YAMLNode] = []
                for value in items {
                    guard let converted = matrixValue(value, of: name, declared: old) else { continue }
                    values.append(converted)
                }
                definition.axes[name] = values
            }
        }
        if let excludeNode {
            definition.exclude = matrixCombinations(excludeNode, what: "exclude", axes: definition.axes, declared: declared)
        }
        if let includeNode {
            definition.include = matrixCombinations(includeNode, what: "include", axes: nil, declared: declared)
        }
        guard diagnostics.count == errorsBefore else { return nil }
        if definition.axes.isEmpty && definition.include.isEmpty {
            error(
                "`matrix` sweeps no variable", at: entry.key.location,
                hint: "add a variable with its values, such as `sparsity: [0.6, 0.8]`, or remove `matrix:`")
            return nil
        }
        return combinations(of: definition, declared: declared)
    }

    /// The declared value of variable `name`, or nil (reported).
    private mutating func declaredVariable(
        _ name: String, at key: YAMLNode, declared: [YAMLNode.Entry], names: [String], what: String
    ) -> YAMLNode? {
        if let value = declared.first(where: { $0.key.scalar == name })?.value { return value }
        error(
            "\(what) `\(name)`, which is not declared under `vars:`", at: key.location,
            hint: Suggestion.hint(for: name, in: names) ?? "declare `\(name)` under `vars:` with its default value")
        return nil
    }

    /// A value for variable `name` converted to its type, or nil (reported).
    private mutating func matrixValue(_ value: YAMLNode, of name: String, declared: YAMLNode) -> YAMLNode? {
        if let converted = variableValue(value, replacing: declared) { return converted }
        error(
            "matrix value for `\(name)` is \(Self.describe(value)), but the variable is \(Self.describe(declared))",
            at: value.location, hint: "give values of the type the variable has under `vars:`")
        return nil
    }

    /// The entries of `exclude:` or `include:`: a list of mappings from
    /// variable names to values. Exclusions may only name swept variables
    /// (`axes`); inclusions any declared variable.
    private mutating func matrixCombinations(
        _ node: YAMLNode, what: String, axes: OrderedDictionary<String, [YAMLNode]>?, declared: [YAMLNode.Entry]
    ) -> [OrderedDictionary<String, YAMLNode>] {
        guard let items = node.items else {
            error(
                "`matrix.\(what)` must be a list of combinations, got \(Self.describe(node))", at: node.location,
                hint: "write `\(what): [{ VAR: VALUE, … }]`")
            return []
        }
        let names = axes.map { Array($0.keys) } ?? declared.compactMap(\.key.scalar)
        var result: [OrderedDictionary<String, YAMLNode>] = []
        for item in items {
            guard let entries = item.entries, !entries.isEmpty else {
                error(
                    "an entry of `matrix.\(what)` must be a mapping of variables to values, got \(Self.describe(item))",
                    at: item.location, hint: "write `{ VAR: VALUE, … }`")
                continue
            }
            var combination: OrderedDictionary<String, YAMLNode> = [:]
            for entry in entries {
                guard let name = mappingKey(entry.key) else { continue }
                guard let old = declared.first(where: { $0.key.scalar == name })?.value, names.contains(name) else {
                    let problem = axes == nil
                        ? "`matrix.include` sets `\(name)`, which is not declared under `vars:`"
                        : "`matrix.exclude` names `\(name)`, which the matrix does not sweep"
                    let advice = axes == nil ? "declare it under `vars:`" : "it can only name swept variables: \(Self.list(names))"
                    error(problem, at: entry.key.location, hint: Suggestion.hint(for: name, in: names) ?? advice)
                    continue
                }
                if let converted = matrixValue(entry.value, of: name, declared: old) { combination[name] = converted }
            }
            result.append(combination)
        }
        return result
    }

    /// The product of the axes without the excluded combinations, then the
    /// included ones; variables a combination does not give take their value
    /// under `vars:`. Nil (reported) when there are none or more than the cap.
    private mutating func combinations(
        of definition: MatrixDefinition, declared: [YAMLNode.Entry]
    ) -> [OrderedDictionary<String, YAMLNode>]? {
        let swept = OrderedSet(definition.axes.keys + definition.include.flatMap(\.keys)).sorted()
        let defaults = Dictionary(declared.compactMap { entry in entry.key.scalar.map { ($0, entry.value) } }, uniquingKeysWith: { a, _ in a })
        let product = definition.axes.values.reduce(1) { count, values in
            let (next, overflow) = count.multipliedReportingOverflow(by: values.count)
            return overflow ? Int.max : next
        }
        let sizes = definition.axes.values.map { String($0.count) }.joined(separator: " × ")
        let narrow = "narrow it with `--matrix vars.NAME=V1,V2` or `exclude:`, or raise `max_instances:`"
        guard product <= MatrixDefinition.enumerationLimit else {
            error(
                "the matrix has \(sizes) combinations before `exclude:`, far more than `max_instances` (\(definition.maxInstances))",
                at: definition.location, hint: narrow)
            return nil
        }
        func value(_ node: YAMLNode) -> Value { RecipeJSON.value(of: node) }
        func matches(_ combination: OrderedDictionary<String, YAMLNode>, _ pattern: OrderedDictionary<String, YAMLNode>) -> Bool {
            pattern.allSatisfy { key, node in combination[key].map(value) == value(node) }
        }

        var result: [OrderedDictionary<String, YAMLNode>] = definition.axes.isEmpty ? [] : [[:]]
        for (name, values) in definition.axes {
            result = result.flatMap { partial in
                values.map { node in
                    var next = partial
                    next[name] = node
                    return next
                }
            }
        }
        // A value written twice gives one combination.
        var seen: Set<[Value]> = []
        result = result.filter { seen.insert($0.values.map(value)).inserted }
        let productCount = result.count
        result.removeAll { combination in definition.exclude.contains { matches(combination, $0) } }
        let excludedCount = productCount - result.count
        result = result.map { combination in
            var complete = combination
            for name in swept where complete[name] == nil { complete[name] = defaults[name] }
            return complete
        }
        var includedCount = 0
        for inclusion in definition.include {
            var combination: OrderedDictionary<String, YAMLNode> = [:]
            for name in swept { combination[name] = inclusion[name] ?? defaults[name] }
            if !result.contains(where: { matches($0, combination) }) {
                result.append(combination)
                includedCount += 1
            }
        }
        result = result.map { combination in
            OrderedDictionary(uniqueKeysWithValues: swept.compactMap { name in combination[name].map { (name, $0) } })
        }
        guard !result.isEmpty else {
            error(
                "`exclude:` removes every combination of the matrix", at: definition.location,
                hint: "keep at least one combination, or remove `matrix:`")
            return nil
        }
        if result.count > definition.maxInstances {
            var counted = sizes.isEmpty ? "" : " (\(sizes)"
            if excludedCount > 0 { counted += ", \(excludedCount) excluded" }
            if includedCount > 0 { counted += counted.isEmpty ? " (\(includedCount) included" : ", \(includedCount) included" }
            if !counted.isEmpty { counted += ")" }
            error(
                "the matrix expands to \(result.count) combinations\(counted), more than `max_instances` (\(definition.maxInstances))",
                at: definition.location, hint: narrow)
            return nil
        }
        return result
    }
}
