import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeStore
import SqueezeTensor
import Testing

/// Only stages that draw on the stage seed key on it: two recipes that differ
/// only in `seed:` share every other stage's cache entries.
@Suite struct SeedKeyTests {
    static let recipe = """
        version: 1
        name: seeds
        seed: 1
        stages:
          base:
            uses: model/import
            with: { directory: model }
          data:
            uses: data/text-classification
            with: { train: train.tsv }
          split:
            uses: data/text-classification
            with: { train: train.tsv, split_dev_from_train: 0.5 }
          run:
            uses: command
            with: { run: [echo, hi] }
        """

    /// The plan's stage keys of the recipe with `seed`.
    static func keys(in project: Project, seed: Int) throws -> [String: String] {
        let recipe = try RecipeLoader.load(
            file: project.path("recipe/recipe.yaml"), stageTypes: BuiltinStages.registry(backends: .builtin).descriptors,
            overrides: [try Override.parse("seed=\(seed)")], environment: [:],
            backends: BackendRegistry.builtin.recipeBackends)
        let pipeline = Pipeline(
            recipe: recipe, registry: BuiltinStages.registry(backends: .builtin), store: try ContentStore(root: project.cacheDirectory), environment: [:])
        var keys: [String: String] = [:]
        for plan in try pipeline.plan() { keys[plan.id] = plan.key }
        return keys
    }

    @Test func onlyStagesDrawingOnTheSeedKeyOnIt() throws {
        let project = try Project("seed-keys")
        try ModelStagesTests.writeTinyModel(at: project.url("recipe/model"))
        try project.write("recipe/train.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\ngood\t1\nbad\t0\n")
        try project.write("recipe/recipe.yaml", Self.recipe)

        let first = try Self.keys(in: project, seed: 1)
        let second = try Self.keys(in: project, seed: 2)
        #expect(first.keys.sorted() == ["base", "data", "run", "split"])
        #expect(first["base"] == second["base"], "model/import consumes no randomness")
        #expect(first["data"] == second["data"], "a data stage without a seeded split consumes no randomness")
        #expect(first["split"] != second["split"], "split_dev_from_train draws the dev rows by the seed")
        #expect(first["run"] != second["run"], "a command gets SQUEEZE_SEED")
    }
}
