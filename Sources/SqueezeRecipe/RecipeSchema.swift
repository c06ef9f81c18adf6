import SqueezeSupport
/// The JSON Schema (draft 2020-12) of recipe files, generated from the stage
/// type declarations so editors, CI checks and `squeeze` agree.
///
/// The schema checks shape: keys, types, required parameters, names. What
/// needs the whole recipe (references to existing stages and variables,
/// output kinds, cycles, a stage type's own `check`) is left to the loader.
public enum RecipeSchema {
    public static let id = "https://squeeze.dev/schemas/recipe.schema.json"

    /// `${vars.NAME}`, which may stand in for a value of any type.
    static let variablePattern = #"^\$\{vars\.[A-Za-z_][A-Za-z0-9_]*\}$"#
    /// `${stage.output}`: an artifact parameter.
    static let artifactPattern = #"^\$\{[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_]*\}$"#

    /// The schema for recipes using `stageTypes`; equal inputs (in any order)
    /// give equal output.
    public static func generate(
        stageTypes: [StageTypeDescriptor], backends: RecipeBackends
    ) -> Value {
        let types = stageTypes.sorted { $0.type < $1.type }
        let backendEnum = Value.array(backends.ids.map(Value.string))
        let backendList = backends.ids.map { "`\($0)`: \(backends.descriptions[$0] ?? "")" }.joined(separator: "; ")
        return .object([
            "$schema": .string("https://json-schema.org/draft/2020-12/schema"),
            "$id": .string(id),
            "title": .string("Squeeze recipe"),
            "description": .string("A Squeeze pipeline (recipe version 1): stages of registered types, run as a DAG and cached by content."),
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "required": .array(["version", "name", "stages"].map(Value.string)),
            "properties": .object([
                "version": .object([
                    "description": .string("The recipe language version; this squeeze reads version 1."),
                    "const": .int(1),
                ]),
                "name": .object([
                    "description": .string("The recipe's name; used in run directories."),
                    "type": .string("string"),
                    "pattern": .string("^\(Names.recipeNamePattern)$"),
                    "maxLength": .int(Names.maxRecipeNameLength),
                ]),
                "description": .object(["description": .string("What the recipe is for."), "type": .string("string")]),
                "backend": .object([
                    "description": .string(
                        "The tensor backend every stage uses unless it names its own (default `\(backends.defaultID)`). \(backendList)."),
                    "type": .string("string"),
                    "enum": backendEnum,
                    "default": .string(backends.defaultID),
                ]),
                "seed": .object([
                    "description": .string("The recipe seed; each stage derives its own from it (default 0)."),
                    "type": .string("integer"),
                    "minimum": .int(0),
                    "default": .int(0),
                ]),
                "vars": .object([
                    "description": .string("Variables, used as `${vars.NAME}`. A value that is exactly `${vars.NAME}` takes the variable's type."),
                    "type": .string("object"),
                    "propertyNames": .object(["pattern": .string("^\(Names.identifierPattern)$")]),
                ]),
                "profiles": .object([
                    "description": .string("Named sets of variable values; `vars.profile` chooses one, whose values replace those under `vars:` (variables given with `--set` still win)."),
                    "type": .string("object"),
                    "propertyNames": .object(["pattern": .string("^\(Names.stageIDPattern)$")]),
                    "additionalProperties": .object([
                        "type": .string("object"),
                        "propertyNames": .object([
                            "pattern": .string("^\(Names.identifierPattern)$"),
                            "not": .object(["const": .string("profile")]),
                        ]),
                    ]),
                ]),
                "matrix": .object([
                    "description": .string("A sweep: declared variables and the values to run with. Stages that depend on a swept variable (directly or through another stage's output) run once per combination, as `id[NAME=VALUE,…]`; the others run once."),
                    "type": .string("object"),
                    "propertyNames": .object(["pattern": .string("^\(Names.identifierPattern)$")]),
                    "properties": .object([
                        "exclude": .object([
                            "description": .string("Combinations to leave out; an entry removes every combination it matches."),
                            "type": .string("array"),
                            "items": .object(["type": .string("object"), "minProperties": .int(1)]),
                        ]),
                        "include": .object([
                            "description": .string("Combinations to add; variables an entry does not give take their value under `vars:`."),
                            "type": .string("array"),
                            "items": .object(["type": .string("object"), "minProperties": .int(1)]),
                        ]),
                        "max_instances": .object([
                            "description": .string("The most combinations the sweep may have (default \(MatrixDefinition.defaultMaxInstances))."),
                            "type": .string("integer"),
                            "minimum": .int(1),
                            "default": .int(MatrixDefinition.defaultMaxInstances),
                        ]),
                    ]),
                    "additionalProperties": .object([
                        "description": .string("The values of one swept variable."),
                        "type": .string("array"),
                        "minItems": .int(1),
                    ]),
                ]),
                "stages": .object([
                    "description": .string("The stages by id. A stage refers to another's output as `${id.output}`."),
                    "type": .string("object"),
                    "minProperties": .int(1),
                    "propertyNames": .object([
                        "pattern": .string("^\(Names.stageIDPattern)$"),
                        "not": .object(["enum": .array(Names.reservedStageIDs.map(Value.string))]),
                    ]),
                    "additionalProperties": .object(["$ref": .string("#/$defs/stage")]),
                ]),
            ]),
            "$defs": .object(["stage": stageSchema(types, backends: backendEnum)]),
        ])
    }

    /// A stage: the common keys, and per stage type (an `if uses == T` branch)
    /// the parameters of `with`.
    private static func stageSchema(_ types: [StageTypeDescriptor], backends: Value) -> Value {
        var uses: [String: Value] = ["description": .string("The stage type."), "type": .string("string")]
        if !types.isEmpty { uses["enum"] = .array(types.map { .string($0.type) }) }
        let branches: [Value] = types.map { type in
            var then: [String: Value] = ["properties": .object(["with": withSchema(type)])]
            if type.parameters.contains(where: { $0.required && $0.defaultValue == nil }) {
                then["required"] = .array([.string("with")])
            }
            return .object([
                "if": .object([
                    "properties": .object(["uses": .object(["const": .string(type.type)])]),
                    "required": .array([.string("uses")]),
                ]),
                "then": .object(then),
            ])
        }
        var stage: [String: Value] = [
            "description": .string("One stage of the pipeline."),
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "required": .array([.string("uses")]),
            "properties": .object([
                "uses": .object(uses),
                "with": .object(["description": .string("The stage type's parameters."), "type": .string("object")]),
                "needs": .object([
                    "description": .string("Stages that must run first, besides those referenced in `with`."),
                    "anyOf": .array([
                        .object(["type": .string("string")]),
                        .object(["type": .string("array"), "items": .object(["type": .string("string")])]),
                    ]),
                ]),
                "backend": .object([
                    "description": .string("The backend of this stage."), "type": .string("string"), "enum": backends,
                ]),
                "resources": .object([
                    "description": .string("What the stage asks of the machine."),
                    "type": .string("object"),
                    "additionalProperties": .bool(false),
                    "properties": .object([
                        "cores": .object([
                            "description": .string("Cores the stage uses, or \"all\" to run alone."),
                            "anyOf": .array([
                                .object(["type": .string("integer"), "minimum": .int(1)]),
                                .object(["const": .string("all")]),
                            ]),
                        ]),
                        "memory": .object([
                            "description": .string("Memory the stage needs, with a binary unit (`8G`, `512M`); the local executor fails the stage when the machine has less."),
                            "type": .string("string"), "pattern": .string("^[0-9]+(\\.[0-9]+)?[KMGTkmgt](i?[Bb])?$"),
                        ]),
                        "gpus": .object([
                            "description": .string("GPUs the stage needs; the local executor fails the stage when the machine has fewer."),
                            "type": .string("integer"), "minimum": .int(0),
                        ]),
                        "time": .object([
                            "description": .string("Wall-clock limit: `90m`, `2h`, `1d`, Slurm's `[D-]HH:MM:SS`, or a number of minutes; a stage that runs longer is stopped and fails with TIMEOUT."),
                            "anyOf": .array([
                                .object(["type": .string("integer"), "minimum": .int(1)]),
                                .object(["type": .string("string")]),
                            ]),
                        ]),
                        "partition": .object([
                            "description": .string("The cluster partition the stage asks for (cluster executors; the local executor ignores it)."),
                            "type": .string("string"), "minLength": .int(1),
                        ]),
                    ]),
                ]),
                "retries": .object([
                    "description": .string("How often a cluster executor resubmits the stage's job after an infrastructure failure (node failure, preemption, TIMEOUT, OUT_OF_MEMORY, a job cancelled by someone else); never after the stage's own error. Default: the site file's `slurm.retries`."),
                    "type": .string("integer"), "minimum": .int(0),
                ]),
                "description": .object(["description": .string("What the stage does."), "type": .string("string")]),
            ]),
        ]
        if !branches.isEmpty { stage["allOf"] = .array(branches) }
        return .object(stage)
    }

    private static func withSchema(_ type: StageTypeDescriptor) -> Value {
        var properties: [String: Value] = [:]
        for parameter in type.parameters {
            guard case .object(var schema) = schema(for: parameter.type) else { continue }
            schema["description"] = .string(parameter.doc)
            if let defaultValue = parameter.defaultValue { schema["default"] = defaultValue }
            properties[parameter.name] = .object(schema)
        }
        let required = type.parameters.filter { $0.required && $0.defaultValue == nil }.map { Value.string($0.name) }
        var schema: [String: Value] = [
            "description": .string("Parameters of `\(type.type)`: \(type.summary)"),
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "properties": .object(properties),
        ]
        if !required.isEmpty { schema["required"] = .array(required) }
        return .object(schema)
    }

    /// The schema of one parameter type. Non-string types also accept a whole
    /// `${vars.NAME}`, which the loader replaces with the variable's value.
    static func schema(for type: ParamType) -> Value {
        let variable = Value.object(["type": .string("string"), "pattern": .string(variablePattern)])
        func orVariable(_ schema: Value) -> Value {
            .object(["anyOf": .array([schema, variable])])
        }
        switch type {
        case .string, .path:
            return .object(["type": .string("string")])
        case .int:
            return orVariable(.object(["type": .string("integer")]))
        case .number:
            return orVariable(.object(["type": .string("number")]))
        case .bool:
            return orVariable(.object(["type": .string("boolean")]))
        case .artifact:
            return .object(["type": .string("string"), "pattern": .string(artifactPattern)])
        case .array(let element):
            return orVariable(.object(["type": .string("array"), "items": schema(for: element)]))
        case .map(let element):
            return orVariable(.object(["type": .string("object"), "additionalProperties": schema(for: element)]))
        case .oneOf(let alternatives):
            return .object(["anyOf": .array(alternatives.map(schema(for:)))])
        case .enumeration(let cases):
            return orVariable(.object(["enum": .array(cases.map(Value.string))]))
        case .download:
            return .object([
                "type": .string("object"),
                "additionalProperties": .bool(false),
                "required": .array([.string("url"), .string("sha256")]),
                "properties": .object([
                    "url": .object(["type": .string("string"), "description": .string("http:// or https://; credentials from ~/.netrc or $NETRC. Not part of the cache key.")]),
                    "sha256": .object(["type": .string("string"), "pattern": .string("^[0-9a-fA-F]{64}$"), "description": .string("The SHA-256 of the file, 64 hex digits: the pin the cache key holds.")]),
                    "files": .object(["description": .string("What the stage reads inside an archive (zip, tar, tar.gz): member paths by role.")]),
                ]),
            ])
        case .any:
            return .object([:])
        }
    }
}
