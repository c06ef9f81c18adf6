import Collections
import Foundation
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML
import Testing

@Suite struct RecipeLoaderTests {
    static let good = """
        version: 1
        name: sst2-distill.v1
        description: Fine-tune and compare.
        backend: reference
        seed: 42
        vars:
          epochs: 4
          rate: 0.001
          data_root: ${env.DATA:-/data}
          labels: {team: nlp}
          prefix: run
        stages:
          base:
            uses: model/import
            with: { source: "hub:mini-$${literal}" }
          data:
            uses: data/load
            with:
              train: ${vars.data_root}/train.tsv
              test: ${env.HOME}/test.tsv
          teacher:
            uses: train/finetune
            needs: [data]
            backend: cpu
            resources: { cores: 2 }
            with:
              model: ${base.model}
              data: ${data.dataset}
              epochs: ${vars.epochs}
              lr: ${vars.rate}
              tags: ${vars.labels}
              notes: "${vars.prefix}-${vars.epochs} in ${out} with seed ${seed}"
          compare:
            uses: eval/classify
            needs: base
            resources: { cores: all }
            description: Compare the models.
            with:
              models: ["${teacher.model}", "${base.model}"]
              data: ${data.dataset}
          shell:
            uses: command
            with:
              run: "echo ${teacher.metrics} > ${out}/copy"
              shell: true
        """

    @Test func goodRecipeEndToEnd() throws {
        let recipe = try Fixtures.load(Self.good, environment: ["HOME": "/home/me"])
        #expect(recipe.name == "sst2-distill.v1")
        #expect(recipe.version == 1)
        #expect(recipe.description == "Fine-tune and compare.")
        #expect(recipe.backend == "reference")
        #expect(recipe.seed == 42)
        #expect(recipe.file == "recipe.yaml")
        #expect(recipe.directory == "/work/project/recipes")
        #expect(Array(recipe.stages.keys) == ["base", "data", "teacher", "compare", "shell"])
        #expect(recipe.vars["epochs"] == .int(4))
        #expect(recipe.vars["data_root"] == .string("${env.DATA:-/data}"))
        #expect(recipe.vars["labels"] == .object(["team": .string("nlp")]))

        let base = try #require(recipe.stages["base"])
        #expect(base.with["source"]?.kind == .string(Template(literal: "hub:mini-${literal}")))
        #expect(base.dependencies.isEmpty)
        #expect(base.backend == "reference")
        #expect(base.location.line == 13 && base.location.column == 3)

        let data = try #require(recipe.stages["data"])
        #expect(data.with["train"]?.kind == .string(Template([
            .reference(.environment(name: "DATA", fallback: "/data")), .literal("/train.tsv"),
        ])))
        // The environment value is not substituted: the engine does that at run time.
        #expect(data.with["test"]?.kind == .string(Template([
            .reference(.environment(name: "HOME", fallback: nil)), .literal("/test.tsv"),
        ])))

        let teacher = try #require(recipe.stages["teacher"])
        #expect(teacher.uses == "train/finetune")
        #expect(teacher.backend == "cpu")
        #expect(teacher.resources == Resources(cores: 2))
        #expect(teacher.needs == ["data"])
        #expect(teacher.dependencies == ["data", "base"])
        // Parameters in declaration order, defaults filled in, vars typed.
        #expect(Array(teacher.with.keys) == ["model", "data", "epochs", "lr", "optimizer", "tags", "notes"])
        #expect(teacher.with["model"]?.kind == .string(Template([.reference(.stageOutput(stage: "base", output: "model"))])))
        let epochs = try #require(teacher.with["epochs"])
        #expect(epochs.kind == .int(4))
        // A substituted variable reports the use site.
        #expect(epochs.location == SourceLocation(file: "recipe.yaml", line: 29, column: 15))
        #expect(teacher.with["lr"]?.kind == .double(0.001))
        let optimizer = try #require(teacher.with["optimizer"])
        #expect(optimizer.kind == .string(Template(literal: "adam")))
        #expect(optimizer.location == teacher.location)
        #expect(teacher.with["tags"]?.kind == .object(["team": ParamValue(.string(Template(literal: "nlp")), at: SourceLocation(file: "recipe.yaml", line: 31, column: 13))]))
        #expect(teacher.with["notes"]?.kind == .string(Template([
            .literal("run-4 in "), .reference(.outputDirectory), .literal(" with seed "), .reference(.seed),
        ])))

        let compare = try #require(recipe.stages["compare"])
        #expect(compare.resources == Resources(allCores: true))
        #expect(compare.dependencies == ["base", "teacher", "data"])
        #expect(compare.description == "Compare the models.")

        let shell = try #require(recipe.stages["shell"])
        #expect(shell.dependencies == ["teacher"])
        #expect(shell.with["inputs"]?.kind == .array([]))
        #expect(shell.with["timeout"] == nil)
    }

    @Test func resolvedValuesRenderThroughTheEngineLookup() throws {
        let recipe = try Fixtures.load(Self.good, environment: ["HOME": "/home/me"])
        let notes = try #require(recipe.stages["teacher"]?.with["notes"])
        let rendered = notes.resolve { reference in
            switch reference {
            case .outputDirectory: "/out"
            case .seed: "7"
            default: "?"
            }
        }
        #expect(rendered == .string("run-4 in /out with seed 7"))
    }

    @Test func resolvedDescriptionKeepsTemplatesAsText() throws {
        let recipe = try Fixtures.load(Self.good, environment: ["HOME": "/home/me"])
        let description = recipe.resolvedDescription
        #expect(description["name"] == .string("sst2-distill.v1"))
        #expect(description["seed"] == .int(42))
        #expect(description["description"] == .string("Fine-tune and compare."))
        let teacher = try #require(description["stages"]?["teacher"])
        #expect(teacher["uses"] == .string("train/finetune"))
        #expect(teacher["with"]?["model"] == .string("${base.model}"))
        #expect(teacher["with"]?["epochs"] == .int(4))
        #expect(teacher["with"]?["optimizer"] == .string("adam"))
        #expect(teacher["dependencies"] == .array([.string("data"), .string("base")]))
        #expect(teacher["resources"] == .object(["cores": .int(2)]))
        #expect(description["stages"]?["compare"]?["resources"] == .object(["cores": .string("all")]))
        // The `$${` escape is restored, so the text loads back to the same value.
        #expect(description["stages"]?["base"]?["with"]?["source"] == .string("hub:mini-$${literal}"))
        #expect(description["vars"]?["data_root"] == .string("${env.DATA:-/data}"))
        // Deterministic text for run records.
        #expect(description.prettyJSON == recipe.resolvedDescription.prettyJSON)
    }

    @Test func loadsFromAFileWithItsDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-recipe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("r.yaml").path
        try "\(header)\nstages:\n  a: { uses: command, with: { run: [echo] } }\n".write(toFile: path, atomically: true, encoding: .utf8)

        let relative = directory.path + "/./sub/../r.yaml"
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let recipe = try RecipeLoader.load(file: relative, stageTypes: Fixtures.registry, environment: [:], backends: Fixtures.backends)
        #expect(recipe.file == relative)
        #expect(recipe.directory == directory.standardizedFileURL.path)
        #expect(recipe.stages["a"]?.location.file == relative)
    }

    @Test func missingFileIsADiagnostic() {
        #expect(throws: Diagnostics.self) {
            try RecipeLoader.load(file: "/nonexistent/recipe.yaml", stageTypes: Fixtures.registry, environment: [:], backends: Fixtures.backends)
        }
    }

    @Test func templateDescriptionRestoresEscapes() {
        let template = Template([.literal("a ${b} "), .reference(.stageOutput(stage: "s", output: "o"))])
        #expect(template.description == "a $${b} ${s.o}")
        #expect(template.render { _ in "X" } == "a ${b} X")
    }

    @Test func prettyJSONIsSortedAndIndented() {
        let value = Value.object([
            "b": .array([.int(1), .double(2), .object([:]), .array([])]),
            "a": .object(["z": .null, "é": .bool(true)]),
            "c": .string("q\"\n"),
        ])
        #expect(value.prettyJSON == """
            {
              "a": {
                "z": null,
                "é": true
              },
              "b": [
                1,
                2.0,
                {},
                []
              ],
              "c": "q\\"\\n"
            }

            """)
    }

    @Test func recipeJSONUsesTheLoaderScalarTyping() throws {
        let node = try #require(try YAMLParser.parse("a: 1\nb: '1'\nc: 1.5\nd: true\ne: ~\nf: [x, \"${vars.y}\"]\n", file: "x.yaml"))
        #expect(RecipeJSON.value(of: node) == .object([
            "a": .int(1), "b": .string("1"), "c": .double(1.5), "d": .bool(true), "e": .null,
            "f": .array([.string("x"), .string("${vars.y}")]),
        ]))
    }
}
