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
    /// The tensor backends a recipe may name.
    public static let defaultBackends: Set<String> = ["cpu", "reference"]

    /// Loads the recipe at `path`; its directory is the directory of the file.
    public static func load(
        file path: String, stageTypes: [String: StageTypeDescriptor], overrides: [Override] = [],
        environment: [String: String], backends: Set<String> = defaultBackends
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
        overrides: [Override] = [], environment: [String: String], backends: Set<String> = defaultBackends
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
        overrides: [Override], environment: [String: String], backends: Set<String>
    ) throws(Diagnostics) -> Recipe {
        var validation = RecipeValidation(
            file: file, directory: directory, stageTypes: stageTypes, environment: environment, backends: backends)
        let recipe = validation.run(root: root, overrides: overrides)
        let problems = validation.finalDiagnostics(overrides: overrides)
        if let recipe, problems.isEmpty { return recipe }
        throw Diagnostics(problems)
    }
}
