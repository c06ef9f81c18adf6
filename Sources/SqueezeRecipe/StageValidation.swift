import Collections
import SqueezeSupport
import SqueezeYAML

extension RecipeValidation {
    /// Validates `stages:` and returns the stages in source order.
    mutating func checkStages(_ entry: YAMLNode.Entry, recipeBackend: String) -> OrderedDictionary<String, StageSpec> {
        let node = entry.value
        let isNull = node.scalar != nil && YAMLScalar.resolve(node) == .null
        guard let entries = node.entries ?? (isNull ? [] : nil) else {
            error("`stages` must be a mapping of stage ids to stages, got \(Self.describe(node))", at: node.location)
            return [:]
        }
        guard !entries.isEmpty else {
            error(
                "`stages` is empty", at: entry.key.location,
                hint: "add at least one stage, such as `hello: { uses: command, with: { run: [echo, hi] } }`")
            return [:]
        }

        // First pass: every id and its type, so references can be checked in any order.
        var bodies: [(id: String, key: YAMLNode, body: YAMLNode)] = []
        for stage in entries {
            guard let id = mappingKey(stage.key) else { continue }
            if Names.reservedStageIDs.contains(id) {
                error(
                    "`\(id)` is reserved and cannot be a stage id", at: stage.key.location,
                    hint: "references use `\(id)` as a namespace; rename the stage")
            } else if !Names.isStageID(id) {
                error("invalid stage id `\(id)`", at: stage.key.location, hint: "stage ids match \(Names.stageIDPattern)")
            }
            stageIDs[id] = .some(nil)
            guard stage.value.entries != nil else {
                error(
                    "stage `\(id)` must be a mapping with at least `uses:`, got \(Self.describe(stage.value))",
                    at: stage.value.location, hint: "write `\(id): { uses: TYPE, with: { … } }`")
                continue
            }
            stageIDs[id] = .some(stageType(of: id, key: stage.key, body: stage.value))
            variableUses[id] = Self.variablesNamed(in: stage.value)
            bodies.append((id, stage.key, stage.value))
        }

        var stages: OrderedDictionary<String, StageSpec> = [:]
        for stage in bodies {
            if let spec = checkStage(stage.id, key: stage.key, body: stage.body, recipeBackend: recipeBackend) {
                stages[stage.id] = spec
            }
        }
        reportCycles(stages: stages)
        return stages
    }

    /// The descriptor named by the stage's `uses`, or nil (reported).
    private mutating func stageType(of id: String, key: YAMLNode, body: YAMLNode) -> StageTypeDescriptor? {
        let known = stageTypes.keys.sorted()
        guard let uses = body["uses"] else {
            error(
                "stage `\(id)` has no `uses`", at: key.location,
                hint: "add `uses: TYPE`; stage types: \(Self.list(known))")
            return nil
        }
        guard let type = stringValue(uses, what: "uses") else { return nil }
        guard let descriptor = stageTypes[type] else {
            error(
                "unknown stage type `\(type)`", at: uses.location,
                hint: Suggestion.hint(for: type, in: known) ?? "stage types: \(Self.list(known))")
            return nil
        }
        return descriptor
    }

    private mutating func checkStage(_ id: String, key: YAMLNode, body: YAMLNode, recipeBackend: String) -> StageSpec? {
        for entry in body.entries ?? [] {
            guard let name = mappingKey(entry.key) else { continue }
            if !Self.stageKeys.contains(name) {
                error(
                    "unknown key `\(name)` in stage `\(id)`", at: entry.key.location,
                    hint: Suggestion.hint(for: name, in: Self.stageKeys) ?? "stage keys are \(Self.list(Self.stageKeys))")
            }
        }
        let needs = body["needs"].map { checkNeeds($0, stage: id) } ?? []
        var backend = recipeBackend
        if let node = body["backend"], let value = backendValue(node) { backend = value }
        let description = body["description"].flatMap { stringValue($0, what: "description") }
        let retries = body["retries"].flatMap { checkRetries($0) }

        guard case .some(.some(let descriptor)) = stageIDs[id] else { return nil }
        let resources = body["resources"].map { checkResources($0) } ?? descriptor.defaultResources
        guard let with = checkWith(body["with"], stage: id, key: key, descriptor: descriptor) else { return nil }

        var dependencies: OrderedSet<String> = OrderedSet(needs)
        for value in with.written {
            for case .stageOutput(let stage, _) in value.references where stageIDs[stage] != nil && stage != id {
                dependencies.append(stage)
            }
        }
        var spec = StageSpec(
            id: id, uses: descriptor.type, with: with.parameters, needs: needs, dependencies: Array(dependencies),
            backend: backend, resources: resources, location: key.location)
        spec.description = description
        spec.retries = retries
        spec.retriesLocation = body["retries"]?.location
        return spec
    }

    /// `retries: N`, a whole number of at least 0.
    private mutating func checkRetries(_ node: YAMLNode) -> Int? {
        if node.scalar != nil, case .int(let count) = YAMLScalar.resolve(node), count >= 0 { return count }
        error(
            "`retries` must be a whole number of at least 0, got \(node.scalar.map { "`\($0)`" } ?? Self.describe(node))",
            at: node.location,
            hint: "how often a cluster executor resubmits the stage after a node failure, preemption, TIMEOUT or OUT_OF_MEMORY, e.g. `retries: 2`")
        return nil
    }

    private mutating func checkNeeds(_ node: YAMLNode, stage: String) -> [String] {
        let items: [YAMLNode]
        switch node.kind {
        case .scalar: items = [node]
        case .sequence(let list): items = list
        case .mapping:
            error("`needs` must be a stage id or a list of stage ids, got a mapping", at: node.location)
            return []
        }
        var needs: OrderedSet<String> = []
        for item in items {
            guard let other = stringValue(item, what: "needs") else { continue }
            if other == stage {
                error("stage `\(stage)` needs itself", at: item.location, hint: "remove `\(stage)` from `needs`")
            } else if stageIDs[other] == nil {
                error(
                    "`needs` names unknown stage `\(other)`", at: item.location,
                    hint: Suggestion.hint(for: other, in: stageIDs.keys.filter { $0 != stage }))
            } else {
                needs.append(other)
            }
        }
        return Array(needs)
    }

    private mutating func checkResources(_ node: YAMLNode) -> Resources {
        guard let entries = node.entries else {
            error("`resources` must be a mapping such as `{cores: 2}`, got \(Self.describe(node))", at: node.location)
            return Resources()
        }
        var resources = Resources()
        for entry in entries {
            guard let name = mappingKey(entry.key) else { continue }
            guard Resources.names.contains(name) else {
                error(
                    "unknown resource `\(name)`", at: entry.key.location,
                    hint: Suggestion.hint(for: name, in: Resources.names)
                        ?? "resources are \(Resources.names.map { "`\($0)`" }.joined(separator: ", "))")
                continue
            }
            let value = entry.value
            resources.locations[name] = value.location
            var scalar: YAMLScalar.Resolved?
            if case .scalar = value.kind { scalar = YAMLScalar.resolve(value) }
            let shown = value.scalar.map { "`\($0)`" } ?? Self.describe(value)
            switch (name, scalar) {
            case ("cores", .int(let cores)?) where cores >= 1:
                resources.cores = cores
            case ("cores", .string("all")?):
                resources.allCores = true
            case ("cores", _):
                error("`cores` must be a whole number of at least 1 or \"all\", got \(shown)", at: value.location)
            case ("gpus", .int(let gpus)?) where gpus >= 0:
                resources.gpus = gpus
            case ("gpus", _):
                error("`gpus` must be a whole number of at least 0, got \(shown)", at: value.location)
            case ("memory", .string(let text)?) where Resources.memory(text) != nil:
                resources.memoryBytes = Resources.memory(text)
            case ("memory", _):
                error("`memory` must be an amount with a unit, got \(shown)", at: value.location, hint: "e.g. `memory: 8G` or `memory: 512M`")
            case ("time", .string(let text)?) where Resources.duration(text) != nil:
                resources.timeLimitSeconds = Resources.duration(text)
            case ("time", .int(let minutes)?) where minutes >= 1:
                resources.timeLimitSeconds = minutes * 60
            case ("time", _):
                error(
                    "`time` must be a duration, got \(shown)", at: value.location,
                    hint: "e.g. `time: 2h`, `time: 90m` or Slurm's `time: \"1-12:00:00\"` (a bare number is minutes)")
            case ("partition", .string(let text)?) where !text.isEmpty:
                resources.partition = text
            default:
                error("`partition` must be a partition name, got \(shown)", at: value.location)
            }
        }
        return resources
    }

    // MARK: - Parameters

    struct CheckedWith {
        /// Every parameter, written or defaulted, in declaration order.
        var parameters: OrderedDictionary<String, ParamValue>
        /// The written values in source order (for dependency order).
        var written: [ParamValue]
    }

    /// Checks `with:` against the descriptor; nil when anything is wrong.
    private mutating func checkWith(_ node: YAMLNode?, stage: String, key: YAMLNode, descriptor: StageTypeDescriptor) -> CheckedWith? {
        let errorsBefore = diagnostics.count
        var entries: [YAMLNode.Entry] = []
        var withLocation = key.location
        if let node {
            withLocation = node.location
            switch node.kind {
            case .mapping(let list): entries = list
            case .scalar where YAMLScalar.resolve(node) == .null: break
            default:
                error("`with` must be a mapping of parameters, got \(Self.describe(node))", at: node.location)
                return nil
            }
        }

        let checker = ParamTypeChecker { [stageIDs] stage, output in
            guard case .some(.some(let type)) = stageIDs[stage] else { return nil }
            return type.output(named: output)?.kind
        }
        var written: [String: ParamValue] = [:]
        var writtenInOrder: [ParamValue] = []
        var substituted: [YAMLNode.Entry] = []
        for entry in entries {
            guard let name = mappingKey(entry.key) else { continue }
            let value = substitutingVariables(entry.value)
            substituted.append(YAMLNode.Entry(key: entry.key, value: value))
            guard let parameter = descriptor.parameter(named: name) else {
                let names = descriptor.parameters.map(\.name)
                error(
                    "stage type `\(descriptor.type)` has no parameter `\(name)`", at: entry.key.location,
                    hint: Suggestion.hint(for: name, in: names)
                        ?? (names.isEmpty ? "it takes no parameters" : "its parameters are \(Self.list(names))"))
                continue
            }
            let paramNode = self.paramNode(value, stage: stage, quoting: parameter.quoting)
            if let checked = checker.check(paramNode, against: parameter.type, into: &diagnostics) {
                written[name] = checked
                writtenInOrder.append(checked)
            }
        }

        var parameters: OrderedDictionary<String, ParamValue> = [:]
        for parameter in descriptor.parameters {
            if let value = written[parameter.name] {
                parameters[parameter.name] = value
            } else if let defaultValue = parameter.defaultValue {
                parameters[parameter.name] = ParamValue(default: defaultValue, at: key.location)
            } else if parameter.required, !entries.contains(where: { $0.key.scalar == parameter.name }) {
                error(
                    "stage `\(stage)` is missing required parameter `\(parameter.name)` (\(parameter.type))", at: key.location,
                    hint: "add `\(parameter.name):` under `with:`; \(parameter.doc)")
            }
        }
        guard diagnostics.count == errorsBefore else { return nil }

        if let check = descriptor.check {
            let withNode = YAMLNode(.mapping(substituted), at: withLocation, tag: node?.tag)
            let found = check(withNode)
            diagnostics += found.filter { $0.severity == .error }
            warnings += found.filter { $0.severity == .warning }
            guard diagnostics.count == errorsBefore else { return nil }
        }
        return CheckedWith(parameters: parameters, written: writtenInOrder)
    }

    /// Every `NAME` written as `${vars.NAME}` in a string of `node`.
    static func variablesNamed(in node: YAMLNode) -> Set<String> {
        switch node.kind {
        case .scalar(let text, _):
            guard text.contains("${"), let parts = try? TemplateSyntax.parse(text) else { return [] }
            return Set(parts.compactMap { if case .reference(.variable(let name), _) = $0 { name } else { nil } })
        case .sequence(let items):
            return items.reduce(into: []) { $0.formUnion(variablesNamed(in: $1)) }
        case .mapping(let entries):
            return entries.reduce(into: []) { $0.formUnion(variablesNamed(in: $1.value)) }
        }
    }

    /// Replaces every scalar that is exactly `${vars.NAME}` with the variable's
    /// value (moved to the use site), so it keeps its type.
    mutating func substitutingVariables(_ node: YAMLNode) -> YAMLNode {
        switch node.kind {
        case .scalar:
            guard case .string(let text) = YAMLScalar.resolve(node),
                  let parts = try? TemplateSyntax.parse(text), parts.count == 1,
                  case .reference(.variable(let name), _) = parts[0],
                  !brokenVariables.contains(name), let value = variables[name]
            else { return node }
            if value.scalar != nil { variableScalarLocations.insert(node.location) }
            return value.relocated(to: node.location)
        case .sequence(let items):
            var substituted: [YAMLNode] = []
            for item in items { substituted.append(substitutingVariables(item)) }
            return YAMLNode(.sequence(substituted), at: node.location, tag: node.tag)
        case .mapping(let entries):
            var substituted: [YAMLNode.Entry] = []
            for entry in entries {
                substituted.append(YAMLNode.Entry(key: entry.key, value: substitutingVariables(entry.value)))
            }
            return YAMLNode(.mapping(substituted), at: node.location, tag: node.tag)
        }
    }

    /// Resolves scalars and parses templates; reference errors are reported here.
    /// `quoting` applies to a plain string value only: list items and mapping
    /// values are separate words already.
    private mutating func paramNode(_ node: YAMLNode, stage: String, quoting: ReferenceQuoting = .none) -> ParamNode {
        switch node.kind {
        case .scalar(let text, let style):
            let quoted = style != .plain
            let kind: ParamNode.Kind = switch YAMLScalar.resolve(node) {
            case .null: .null
            case .bool(let b): .bool(b)
            case .int(let i): .int(i)
            case .double(let d): .double(d)
            case .string(let string):
                template(string, at: node.location, stage: stage, quoting: quoting).map { .string($0) } ?? .invalid
            }
            return ParamNode(
                kind: kind, location: node.location, text: text, quoted: quoted,
                fromVariable: variableScalarLocations.contains(node.location),
                isOutOfRangeInteger: YAMLScalar.isOutOfRangeInteger(node))
        case .sequence(let items):
            return ParamNode(
                kind: .sequence(items.map { paramNode($0, stage: stage) }), location: node.location, text: "", quoted: false)
        case .mapping(let entries):
            var fields: [(key: String, value: ParamNode)] = []
            var ok = true
            for entry in entries {
                guard let key = mappingKey(entry.key) else {
                    ok = false
                    continue
                }
                fields.append((key, paramNode(entry.value, stage: stage)))
            }
            return ParamNode(kind: ok ? .mapping(fields) : .invalid, location: node.location, text: "", quoted: false)
        }
    }

    /// The template of a string, with variables spliced in as text (as
    /// `.value` parts in a shell script, each checked for where it stands);
    /// nil when any reference is wrong (each is reported).
    private mutating func template(
        _ text: String, at location: SourceLocation, stage: String, quoting: ReferenceQuoting = .none
    ) -> Template? {
        let written: [TemplateSyntax.Part]
        do {
            written = try TemplateSyntax.parse(text)
        } catch {
            self.error(error.message, at: location, hint: error.hint)
            return nil
        }
        var parts: [Template.Part] = []
        /// How each non-literal part is written, for messages about where it stands.
        var writtenAs: [String] = []
        var ok = true
        func appendLiteral(_ text: String) {
            if case .literal(let previous)? = parts.last {
                parts[parts.count - 1] = .literal(previous + text)
            } else {
                parts.append(.literal(text))
            }
        }
        func append(_ part: Template.Part, writtenAs text: String) {
            parts.append(part)
            writtenAs.append(text)
        }
        for part in written {
            switch part {
            case .literal(let text):
                appendLiteral(text)
            case .reference(.reference(let reference), let text):
                if checkReference(reference, at: location, stage: stage) {
                    append(.reference(reference), writtenAs: text)
                } else {
                    ok = false
                }
            case .reference(.variable(let name), let text):
                guard let value = variables[name] else {
                    error(
                        "unknown variable `\(name)` in `\(text)`", at: location,
                        hint: Suggestion.hint(for: name, in: variables.keys) ?? "declare it under `vars:`")
                    ok = false
                    continue
                }
                if brokenVariables.contains(name) {
                    ok = false
                    continue
                }
                switch value.kind {
                case .scalar(let raw, _):
                    guard case .string(let string) = YAMLScalar.resolve(value) else {
                        appendLiteral(raw)
                        continue
                    }
                    // The definition parsed cleanly (it is not broken), and has no variables.
                    let innerParts = (try? TemplateSyntax.parse(string)) ?? []
                    if quoting == .shell, innerParts.isEmpty { append(.value(""), writtenAs: text) }
                    for inner in innerParts {
                        switch inner {
                        case .literal(let literal):
                            // In a shell script a variable's text is data, so
                            // `--set vars.x='a; rm -rf ~'` can never run.
                            if quoting == .shell { append(.value(literal), writtenAs: text) } else { appendLiteral(literal) }
                        case .reference(.reference(let reference), _):
                            if checkReference(reference, at: location, stage: stage) {
                                append(.reference(reference), writtenAs: text)
                            } else {
                                ok = false
                            }
                        case .reference(.variable, _): ok = false
                        }
                    }
                case .sequence, .mapping:
                    error(
                        "variable `\(name)` is \(Self.describe(value)) and cannot be part of a string", at: location,
                        hint: "a list or mapping variable can only be used as a whole value: `\(text)`")
                    ok = false
                }
            }
        }
        if ok, quoting == .shell {
            for (refusal, text) in zip(ShellScript.refusals(in: parts), writtenAs) {
                guard let refusal else { continue }
                error("`\(text)` cannot be substituted \(refusal.place) (line \(refusal.line) of the script)", at: location, hint: refusal.hint)
                ok = false
            }
        }
        return ok ? Template(parts) : nil
    }

    /// Whether a reference names something that exists; reports it if not.
    private mutating func checkReference(_ reference: Reference, at location: SourceLocation, stage: String) -> Bool {
        switch reference {
        case .stageOutput(let other, let output):
            if other == stage {
                error(
                    "stage `\(stage)` refers to its own output", at: location,
                    hint: "a stage's own output directory is `${out}`")
                return false
            }
            guard let type = stageIDs[other] else {
                let hint: String? =
                    if let guess = Suggestion.closest(to: other, in: stageIDs.keys.filter { $0 != stage }) {
                        "did you mean `${\(guess).\(output)}`?"
                    } else if let namespace = Suggestion.closest(to: other, in: ["vars", "env"]) {
                        "did you mean `${\(namespace).\(output)}`?"
                    } else {
                        nil
                    }
                error("unknown stage `\(other)` in `\(reference)`", at: location, hint: hint)
                return false
            }
            guard let type else { return true }
            guard type.output(named: output) != nil else {
                let outputs = type.outputs.map(\.name)
                error(
                    "stage `\(other)` (`\(type.type)`) has no output `\(output)`", at: location,
                    hint: Suggestion.hint(for: output, in: outputs)
                        ?? (outputs.isEmpty ? "`\(type.type)` has no outputs" : "its outputs are \(Self.list(outputs))"))
                return false
            }
            return true
        case .environment(let name, nil):
            guard environment[name] != nil else {
                error(
                    "environment variable `\(name)` is not set", at: location,
                    hint: "export it, or write `${env.\(name):-default}`")
                return false
            }
            return true
        case .environment, .outputDirectory, .seed:
            return true
        }
    }
}

extension ParamValue {
    /// A default value as a parameter value; default strings are literal text.
    init(default value: Value, at location: SourceLocation) {
        switch value {
        case .null: self.init(.null, at: location)
        case .bool(let b): self.init(.bool(b), at: location)
        case .int(let i): self.init(.int(i), at: location)
        case .double(let d): self.init(.double(d), at: location)
        case .string(let s): self.init(.string(Template(literal: s)), at: location)
        case .array(let items): self.init(.array(items.map { ParamValue(default: $0, at: location) }), at: location)
        case .object(let fields):
            var ordered: OrderedDictionary<String, ParamValue> = [:]
            for key in fields.keys.sorted() {
                if let field = fields[key] { ordered[key] = ParamValue(default: field, at: location) }
            }
            self.init(.object(ordered), at: location)
        }
    }
}
