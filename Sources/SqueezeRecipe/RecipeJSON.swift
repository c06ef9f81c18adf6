import SqueezeSupport
import SqueezeYAML

/// YAML trees as JSON values, for tools that validate recipes against the
/// generated JSON Schema.
public enum RecipeJSON {
    /// The JSON value of a YAML tree, with the scalar typing the loader uses
    /// (YAML 1.2 core schema for plain scalars; quoted scalars are strings).
    /// Non-scalar mapping keys become their canonical JSON text.
    public static func value(of node: YAMLNode) -> Value {
        switch node.kind {
        case .scalar:
            switch YAMLScalar.resolve(node) {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .sequence(let items):
            return .array(items.map(value(of:)))
        case .mapping(let entries):
            var fields: [String: Value] = [:]
            for entry in entries {
                fields[entry.key.scalar ?? value(of: entry.key).canonicalJSON] = value(of: entry.value)
            }
            return .object(fields)
        }
    }
}

extension Recipe {
    /// The validated recipe as JSON, for run records: parameters as written
    /// (after variables and `--set`, defaults filled in), templates as text.
    public var resolvedDescription: Value {
        var object: [String: Value] = [
            "version": .int(version),
            "name": .string(name),
            "backend": .string(backend),
            "seed": .int(seed),
            "vars": .object(Dictionary(uniqueKeysWithValues: vars.map { ($0.key, $0.value) })),
            "stages": .object(Dictionary(uniqueKeysWithValues: stages.map { ($0.key, $0.value.resolvedDescription) })),
        ]
        if let description { object["description"] = .string(description) }
        if let profile { object["profile"] = .string(profile) }
        if let matrix {
            object["matrix"] = .object([
                "variables": .array(matrix.variables.map(Value.string)),
                "combinations": .array(matrix.combinations.map { combination in
                    .object(Dictionary(uniqueKeysWithValues: combination.map { ($0.key, $0.value) }))
                }),
            ])
        }
        return .object(object)
    }
}

extension StageSpec {
    /// The stage as JSON; see `Recipe.resolvedDescription`.
    public var resolvedDescription: Value {
        var resourceFields: [String: Value] = [:]
        if resources.allCores {
            resourceFields["cores"] = .string("all")
        } else if let cores = resources.cores {
            resourceFields["cores"] = .int(cores)
        }
        if let memory = resources.memoryBytes { resourceFields["memory_bytes"] = .int(memory) }
        if let gpus = resources.gpus { resourceFields["gpus"] = .int(gpus) }
        if let time = resources.timeLimitSeconds { resourceFields["time_seconds"] = .int(time) }
        if let partition = resources.partition { resourceFields["partition"] = .string(partition) }
        var object: [String: Value] = [
            "uses": .string(uses),
            "with": .object(Dictionary(uniqueKeysWithValues: with.map { ($0.key, $0.value.writtenValue) })),
            "needs": .array(needs.map(Value.string)),
            "dependencies": .array(dependencies.map(Value.string)),
            "backend": .string(backend),
            "resources": .object(resourceFields),
        ]
        if let description { object["description"] = .string(description) }
        if let retries { object["retries"] = .int(retries) }
        if baseID != id {
            object["base"] = .string(baseID)
            object["matrix"] = .object(Dictionary(uniqueKeysWithValues: matrixValues.map { ($0.key, $0.value) }))
        }
        return .object(object)
    }
}

extension ParamValue {
    /// The value with templates as written (`${teacher.model}`, `$${` escapes).
    public var writtenValue: Value {
        switch kind {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .string(let template): .string(template.description)
        case .array(let items): .array(items.map(\.writtenValue))
        case .object(let fields): .object(Dictionary(uniqueKeysWithValues: fields.map { ($0.key, $0.value.writtenValue) }))
        }
    }
}
