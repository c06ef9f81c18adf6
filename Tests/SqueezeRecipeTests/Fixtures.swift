import SqueezeRecipe
import SqueezeYAML
import Testing

/// Test-local stage types: a fake training stage with typed parameters and
/// artifact inputs, a few producers, and one mirroring the built-in `command`.
enum Fixtures {
    static let importModel = StageTypeDescriptor(
        type: "model/import", version: 1, summary: "Imports a model.",
        parameters: [ParameterSpec("source", .string, required: true, doc: "Where the model comes from.")],
        outputs: [OutputSpec("model", kind: "model", doc: "The model.")])

    static let loadData = StageTypeDescriptor(
        type: "data/load", version: 1, summary: "Loads a dataset.",
        parameters: [
            ParameterSpec("train", .path, required: true, doc: "Training split."),
            ParameterSpec("test", .path, doc: "Test split."),
        ],
        outputs: [OutputSpec("dataset", kind: "dataset", doc: "The dataset.")])

    static let finetune = StageTypeDescriptor(
        type: "train/finetune", version: 1, summary: "Fine-tunes a model.",
        parameters: [
            ParameterSpec("model", .artifact("model"), required: true, doc: "The model to train."),
            ParameterSpec("data", .artifact("dataset"), required: true, doc: "The training data."),
            ParameterSpec("epochs", .int, default: .int(3), doc: "Passes over the data."),
            ParameterSpec("lr", .number, default: .double(5e-5), doc: "Learning rate."),
            ParameterSpec("optimizer", .enumeration(["adam", "sgd"]), default: .string("adam"), doc: "Optimizer."),
            ParameterSpec("tags", .map(.string), doc: "Free-form labels."),
            ParameterSpec("notes", .string, doc: "A note."),
            ParameterSpec("extra", .any, doc: "Anything."),
        ],
        outputs: [
            OutputSpec("model", kind: "model", doc: "The trained model."),
            OutputSpec("metrics", kind: "file", doc: "Training metrics."),
        ])

    static let evaluate = StageTypeDescriptor(
        type: "eval/classify", version: 1, summary: "Evaluates models.",
        parameters: [
            ParameterSpec("models", .array(.artifact("model")), required: true, doc: "Models to compare."),
            ParameterSpec("data", .artifact("any"), required: true, doc: "Evaluation data."),
        ],
        outputs: [OutputSpec("report", kind: "file", doc: "The report.")])

    /// Mirrors the built-in `command` stage, including a `check`.
    static let command = StageTypeDescriptor(
        type: "command", version: 1, summary: "Runs a program.",
        parameters: [
            ParameterSpec("run", .oneOf([.array(.string), .string]), required: true, doc: "argv, or a script with `shell: true`."),
            ParameterSpec("shell", .bool, default: .bool(false), doc: "Use /bin/sh."),
            ParameterSpec("inputs", .array(.path), default: .array([]), doc: "Files read."),
            ParameterSpec("outputs", .array(.string), default: .array([]), doc: "Files written under ${out}."),
            ParameterSpec("env", .map(.string), default: .object([:]), doc: "Environment."),
            ParameterSpec("timeout", .number, doc: "Seconds."),
        ],
        outputs: [OutputSpec("out", kind: "directory", doc: "The output directory.")],
        check: { with in
            let shell = with["shell"]?.scalar == "true"
            guard let run = with["run"], shell, run.items != nil else { return [] }
            return [Diagnostic("`run` must be a single string when `shell: true`", at: run.location)]
        })

    static let all = [importModel, loadData, finetune, evaluate, command]
    static let registry = Dictionary(uniqueKeysWithValues: all.map { ($0.type, $0) })

    static let file = "recipe.yaml"

    /// The backends the fixtures' recipes may name.
    static let backends = RecipeBackends(
        descriptions: ["cpu": "the fast backend", "reference": "the specification"], defaultID: "cpu")

    static func load(
        _ text: String, set overrides: [String] = [], matrix: [String] = [], environment: [String: String] = [:],
        backends: RecipeBackends = Fixtures.backends
    ) throws(Diagnostics) -> Recipe {
        var parsed: [Override] = []
        do {
            for argument in overrides { parsed.append(try Override.parse(argument)) }
            for argument in matrix { parsed.append(try Override.parseMatrix(argument)) }
        } catch {
            throw Diagnostics([error])
        }
        return try RecipeLoader.load(
            text: text, file: file, directory: "/work/project/./recipes/../recipes", stageTypes: registry,
            overrides: parsed, environment: environment, backends: backends)
    }

    /// The diagnostics of a recipe that must fail to load.
    static func errors(
        _ text: String, set overrides: [String] = [], matrix: [String] = [], environment: [String: String] = [:],
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> [Diagnostic] {
        do {
            let recipe = try load(text, set: overrides, matrix: matrix, environment: environment)
            Issue.record("expected errors, but \(recipe.name) loaded", sourceLocation: sourceLocation)
            return []
        } catch {
            return error.items
        }
    }

    /// The only diagnostic of a recipe that must fail with exactly one error.
    static func error(
        _ text: String, set overrides: [String] = [], matrix: [String] = [], environment: [String: String] = [:],
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> Diagnostic? {
        let items = errors(text, set: overrides, matrix: matrix, environment: environment, sourceLocation: sourceLocation)
        if items.count != 1 {
            Issue.record("expected exactly one error, got \(items.count):\n\(Diagnostics(items))", sourceLocation: sourceLocation)
        }
        return items.first
    }
}

extension Diagnostic {
    /// `line:column` of the diagnostic, or "none".
    var position: String {
        location.map { "\($0.line):\($0.column)" } ?? "none"
    }
}

/// The head of most test recipes.
let header = """
    version: 1
    name: test
    """
