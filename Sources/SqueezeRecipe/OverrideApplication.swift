import SqueezeYAML

extension RecipeValidation {
    /// Applies one `--set` to the tree. Targets that do not exist are reported
    /// (naming the flag); targets inside parts of the recipe that are broken
    /// anyway (a stage with an unknown type, a `with` that is not a mapping)
    /// are skipped, since validation reports those.
    mutating func apply(_ override: Override, to root: inout YAMLNode) {
        func failure(_ message: String, hint: String? = nil) {
            error("`\(override.sourceName)`: \(message)", at: nil, hint: hint)
        }
        guard let target = override.target else {
            failure("cannot set `\(override.path.joined(separator: "."))`")
            return
        }
        let here = SourceLocation(file: override.sourceName, line: 1, column: 1)
        let value: YAMLNode
        do {
            value = try YAMLParser.parse(override.valueText, file: override.sourceName) ?? YAMLNode(.scalar("", .plain), at: here)
        } catch {
            // libyaml words its errors for YAML files ("did not find expected
            // node content"); say instead what the flag's value should be.
            let given = override.argument.drop { $0 != "=" }.dropFirst()
            if override.flag == Override.matrixFlag {
                failure(
                    "cannot read `\(given)` as a comma-separated list of values",
                    hint: "give a value between every two commas, and quote a value holding `,`, `[`, `]`, `{`, `}` or `#`, "
                        + "as in `--matrix 'vars.NAME=0.6,0.8'` or `--matrix 'vars.NAME=\"a,b\",c'`")
            } else {
                failure(
                    "cannot read the value `\(given)`: \(error.message)",
                    hint: "the value is YAML flow text (`3`, `0.5`, `[a, b]`, `{k: v}`); quote one meant as text, as in `--set 'vars.NAME=\"[a\"'`")
            }
            return
        }

        switch target {
        case .seed:
            root.setValue(value, forKey: "seed", keyLocation: here)
        case .backend:
            root.setValue(value, forKey: "backend", keyLocation: here)
        case .matrixAxis(let name):
            var matrix = root["matrix"] ?? YAMLNode(.mapping([]), at: here)
            guard matrix.entries != nil else { return }
            matrix.setValue(value, forKey: name, keyLocation: here)
            root.setValue(matrix, forKey: "matrix", keyLocation: here)
        case .variable(let name):
            guard var vars = root["vars"], let entries = vars.entries, let old = entries.first(where: { $0.key.scalar == name })?.value else {
                let names = root["vars"]?.entries?.compactMap(\.key.scalar) ?? []
                failure(
                    "the recipe has no variable `\(name)`",
                    hint: Suggestion.hint(for: name, in: names) ?? "an override can only change a variable declared under `vars:`")
                return
            }
            guard let converted = variableValue(value, replacing: old) else {
                failure("variable `\(name)` is \(Self.describe(old)), got \(Self.describe(value))")
                return
            }
            vars.setValue(converted, forKey: name, keyLocation: here)
            root.setValue(vars, forKey: "vars", keyLocation: here)
        case .stageBackend(let id):
            guard var stages = root["stages"] else { return }
            guard var stage = stageToOverride(id, in: stages, override: override) else { return }
            stage.setValue(value, forKey: "backend", keyLocation: here)
            stages.setValue(stage, forKey: id, keyLocation: here)
            root.setValue(stages, forKey: "stages", keyLocation: here)
        case .parameter(let id, let path):
            guard var stages = root["stages"] else { return }
            guard var stage = stageToOverride(id, in: stages, override: override) else { return }
            guard let uses = stage["uses"]?.scalar, let descriptor = stageTypes[uses] else { return }
            guard let parameterName = path.first, descriptor.parameter(named: parameterName) != nil else {
                let names = descriptor.parameters.map(\.name)
                failure(
                    "stage type `\(descriptor.type)` has no parameter `\(path.first ?? "")`",
                    hint: Suggestion.hint(for: path.first ?? "", in: names) ?? "its parameters are \(Self.list(names))")
                return
            }
            var with = stage["with"] ?? YAMLNode(.mapping([]), at: here)
            if case .scalar = with.kind, YAMLScalar.resolve(with) == .null {
                with = YAMLNode(.mapping([]), at: with.location)
            }
            guard with.entries != nil else { return }
            var problem: String?
            with = Self.setting(value, at: path, in: with, placeholder: here, problem: &problem)
            if let problem {
                failure(problem)
                return
            }
            stage.setValue(with, forKey: "with", keyLocation: here)
            stages.setValue(stage, forKey: id, keyLocation: here)
            root.setValue(stages, forKey: "stages", keyLocation: here)
        }
    }

    /// The stage's mapping, or nil: reported when the stage does not exist,
    /// quiet when it is not a mapping (validation reports that).
    private mutating func stageToOverride(_ id: String, in stages: YAMLNode, override: Override) -> YAMLNode? {
        guard let entries = stages.entries else { return nil }
        guard let stage = entries.first(where: { $0.key.scalar == id })?.value else {
            error(
                "`\(override.sourceName)`: the recipe has no stage `\(id)`", at: nil,
                hint: Suggestion.hint(for: id, in: entries.compactMap(\.key.scalar)))
            return nil
        }
        return stage.entries != nil ? stage : nil
    }

    /// The override value for a variable of the old value's type, or nil when
    /// the types differ. A number variable takes an integer (as a float); a
    /// string variable takes any scalar as its text.
    func variableValue(_ value: YAMLNode, replacing old: YAMLNode) -> YAMLNode? {
        switch old.kind {
        case .sequence: return value.items != nil ? value : nil
        case .mapping: return value.entries != nil ? value : nil
        case .scalar: break
        }
        guard case .scalar(let text, _) = value.kind else {
            return YAMLScalar.resolve(old) == .null ? value : nil
        }
        switch (YAMLScalar.resolve(old), YAMLScalar.resolve(value)) {
        case (.null, _), (.int, .int), (.double, .double), (.bool, .bool):
            return value
        case (.double, .int(let i)):
            return YAMLNode(.scalar(String(Double(i)), .plain), at: value.location)
        case (.string, _):
            return YAMLNode(.scalar(text, .doubleQuoted), at: value.location)
        default:
            return nil
        }
    }

    /// `node` with `value` stored at `path[depth...]` (mapping keys or list
    /// indexes), creating missing mappings on the way.
    static func setting(
        _ value: YAMLNode, at path: [String], depth: Int = 0, in node: YAMLNode, placeholder: SourceLocation,
        problem: inout String?
    ) -> YAMLNode {
        guard depth < path.count else { return value }
        let key = path[depth]
        let isLast = depth == path.count - 1
        let parent = path[..<depth].joined(separator: ".")
        let full = path.joined(separator: ".")
        switch node.kind {
        case .mapping(let entries):
            var result = node
            let existing = entries.first(where: { $0.key.scalar == key })?.value ?? YAMLNode(.mapping([]), at: placeholder)
            let child = isLast
                ? value : setting(value, at: path, depth: depth + 1, in: existing, placeholder: placeholder, problem: &problem)
            result.setValue(child, forKey: key, keyLocation: placeholder)
            return result
        case .sequence(var items):
            guard let index = Int(key), items.indices.contains(index) else {
                problem = "cannot set `\(full)`: `\(parent)` is a list of \(items.count) item\(items.count == 1 ? "" : "s"), and `\(key)` is not an index in it"
                return node
            }
            items[index] = isLast
                ? value : setting(value, at: path, depth: depth + 1, in: items[index], placeholder: placeholder, problem: &problem)
            return YAMLNode(.sequence(items), at: node.location, tag: node.tag)
        case .scalar:
            if YAMLScalar.resolve(node) == .null {
                return setting(
                    value, at: path, depth: depth, in: YAMLNode(.mapping([]), at: node.location), placeholder: placeholder,
                    problem: &problem)
            }
            problem = "cannot set `\(full)`: `\(parent)` is \(describe(node))"
            return node
        }
    }
}
