import ArgumentParser
import SqueezeSupport
import SqueezeTensor
import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeStore
import SqueezeYAML

/// Where the cache and run records live.
struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("cache-dir"), help: "Cache directory (default: $SQUEEZE_CACHE or ./.squeeze).")
    var cacheDirectory: String?

    @Option(name: .customLong("runs-dir"), help: "Run records directory (default: $SQUEEZE_RUNS or ./runs).")
    var runsDirectory: String?

    var resolvedCacheDirectory: String { resolvedCacheDirectory(site: nil) }

    /// `--cache-dir`, else `$SQUEEZE_CACHE`, else the site file's
    /// `cache.directory` (`site`), else `./.squeeze`.
    func resolvedCacheDirectory(site: String?) -> String {
        absolutePath(cacheDirectory ?? ProcessInfo.processInfo.environment["SQUEEZE_CACHE"] ?? site ?? ".squeeze")
    }

    var resolvedRunsDirectory: String {
        absolutePath(runsDirectory ?? ProcessInfo.processInfo.environment["SQUEEZE_RUNS"] ?? "runs")
    }

    func openStore(site: String? = nil) throws -> ContentStore {
        let root = resolvedCacheDirectory(site: site)
        do {
            return try ContentStore(root: root)
        } catch {
            throw UserError("cannot open the cache at \(root): \(error)")
        }
    }

    var runStore: RunStore { RunStore(root: resolvedRunsDirectory) }

    /// The runs of the runs directory; one that cannot be read is bad input.
    func runListing() throws -> RunListing {
        do {
            return try runStore.listing()
        } catch let failure as RunStore.Failure {
            throw UserError(runsDirectoryProblem(failure))
        }
    }

    /// A runs-store failure with what to do about it.
    func runsDirectoryProblem(_ failure: RunStore.Failure) -> String {
        guard failure.concernsRunsDirectory else { return failure.description }
        return failure.description + "; point --runs-dir (or $SQUEEZE_RUNS) at a directory of run records"
    }
}

/// `path` made absolute against the working directory, `..` and `.` resolved.
func absolutePath(_ path: String) -> String {
    let joined = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
    return (joined as NSString).standardizingPath
}

/// The recipe argument and the flags that change what it says.
struct RecipeOptions: ParsableArguments {
    @Argument(help: "The recipe file (YAML).")
    var recipe: String

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Override a value: `vars.NAME=VALUE` or `stages.ID.with.PARAM=VALUE` (repeatable).",
        valueName: "path=value"))
    var overrides: [String] = []

    @Option(name: .customLong("matrix"), help: ArgumentHelp(
        "Sweep a variable over values: `vars.NAME=V1,V2,…` (repeatable); replaces that variable's list under `matrix:`.",
        valueName: "vars.name=values"))
    var matrix: [String] = []

    func load() throws -> Recipe {
        try Self.load(file: recipe, overrides: overrides, matrix: matrix)
    }

    /// Loads `file` with `--set` and `--matrix` arguments as written (a
    /// cluster job loads the driver's recipe exactly this way).
    static func load(file recipe: String, overrides: [String], matrix: [String]) throws -> Recipe {
        var parsed: [Override] = []
        var problems: [Diagnostic] = []
        for text in overrides {
            do { parsed.append(try Override.parse(text)) } catch { problems.append(error) }
        }
        for text in matrix {
            do { parsed.append(try Override.parseMatrix(text)) } catch { problems.append(error) }
        }
        if !problems.isEmpty { throw Diagnostics(problems) }
        let loaded = try RecipeLoader.load(
            file: recipe, stageTypes: Registered.stages.descriptors, overrides: parsed,
            environment: ProcessInfo.processInfo.environment, backends: Registered.backends.recipeBackends)
        for warning in loaded.warnings { Console.error(warning.description) }
        return loaded
    }
}


/// Stage-id lists given as repeated flags or comma-separated. Commas inside
/// `[…]` belong to a matrix instance id: `int8[observer=mse,sparsity=0.8]`.
func stageList(_ values: [String]) -> [String] {
    var ids: [String] = []
    for value in values {
        var current = "", depth = 0
        for character in value {
            switch character {
            case "[": depth += 1
            case "]": depth = max(0, depth - 1)
            case "," where depth == 0:
                ids.append(current)
                current = ""
                continue
            default: break
            }
            current.append(character)
        }
        ids.append(current)
    }
    return ids.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// The stages `ids` select: a stage id, or the base id of a matrix sweep's
/// instances, which selects all of them. A typo is a usage error with a hint.
func selectStages(_ ids: [String], in recipe: Recipe, flag: String) throws -> [String] {
    var selected: [String] = []
    for id in ids {
        if recipe.stages[id] != nil {
            selected.append(id)
            continue
        }
        let instances = recipe.stages.values.filter { $0.baseID == id }.map(\.id)
        guard instances.isEmpty else {
            selected += instances
            continue
        }
        var message = "\(flag) names unknown stage `\(id)`"
        if let hint = Suggestion.hint(for: id, in: recipe.stages.keys) { message += "; \(hint)" }
        throw UserError(message)
    }
    return selected
}
