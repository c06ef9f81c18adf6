import Foundation
import SqueezeYAML

/// Loads a recipe file into a validated `Recipe`.
///
/// Loading parses the YAML, applies `--set` overrides to the tree, checks every
/// key and parameter against the registered stage types, substitutes
/// variables, parses `${…}` references and orders the stages' dependencies.
/// It reports every independent error it finds, sorted by position, as one
/// `Diagnostics` (errors caused by `--set` flags first, see ``Override``).
public enum RecipeLoader {
    /// Loads the recipe at `path`; its directory is the directory of the file.
    public static func load(
        file path: String, stageTypes: [String: StageTypeDescriptor], overrides: [Override] = [],
        environment: [String: String], backends: RecipeBackends
    ) throws(Diagnostics) -> Recipe {
        let root: YAMLNode?
        do {
            root = try YAMLParser.parseFile(atPath: path, displayName: path)
        } catch {
            throw Diagnostics([error])
        }
        let directory = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
        return try load(
            root: root, file: path, directory: directory, stageTypes: stageTypes, overrides: overrides,
            environment: environment, backends: backends)
    }

    /// Loads a recipe from `text`, reported as `file`, with relative paths
    /// resolved against `directory`.
    public static func load(
        text: String, file: String, directory: String, stageTypes: [String: StageTypeDescriptor],
        overrides: [Override] = [], environment: [String: String], backends: RecipeBackends
    ) throws(Diagnostics) -> Recipe {
        let root: YAMLNode?
        do {
            root = try YAMLParser.parse(text, file: file)
        } catch {
            throw Diagnostics([error])
        }
        let absolute = URL(fileURLWithPath: directory, isDirectory: true).standardizedFileURL.path
        return try load(
            root: root, file: file, directory: absolute, stageTypes: stageTypes, overrides: overrides,
            environment: environment, backends: backends)
    }

    /// Validates an already parsed tree.
    static func load(
        root: YAMLNode?, file: String, directory: String, stageTypes: [String: StageTypeDescriptor],
        overrides: [Override], environment: [String: String], backends: RecipeBackends
    ) throws(Diagnostics) -> Recipe {
        func validation() -> RecipeValidation {
            RecipeValidation(file: file, directory: directory, stageTypes: stageTypes, environment: environment, backends: backends)
        }
        var base = validation()
        let recipe = base.run(root: root, overrides: overrides)
        let problems = base.finalDiagnostics(overrides: overrides)
        guard let recipe, problems.isEmpty else { throw Diagnostics(problems) }
        guard let combinations = base.matrixCombinations else { return recipe }

        // Each combination is validated on its own: a value may be fine for
        // one stage type check and wrong for another.
        var instances: [Recipe] = []
        var instanceProblems: [Diagnostic] = []
        for combination in combinations {
            var instance = validation()
            if let loaded = instance.run(root: root, overrides: overrides, binding: combination) {
                instances.append(loaded)
            }
            let name = MatrixSweep.instanceID("", combination.mapValues(RecipeJSON.value(of:)))
            instanceProblems += instance.finalDiagnostics(overrides: overrides).map { problem in
                let context = "in matrix combination `\(name)`"
                return Diagnostic(problem.message, at: problem.location, hint: problem.hint.map { "\($0) (\(context))" } ?? context)
            }
        }
        guard instanceProblems.isEmpty, instances.count == combinations.count else {
            throw Diagnostics(instanceProblems)
        }
        return MatrixExpansion.expand(
            base: recipe, combinations: combinations.map { $0.mapValues(RecipeJSON.value(of:)) },
            instances: instances, variableUses: base.variableUses, profileVariables: base.profileVariables)
    }
}
