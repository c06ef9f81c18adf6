import Foundation
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML
import Testing

@Suite struct RecipeSchemaTests {
    @Test func schemaIsDeterministicAndDescribesTheStages() throws {
        let schema = RecipeSchema.generate(stageTypes: Fixtures.all, backends: Fixtures.backends)
        #expect(schema.prettyJSON == RecipeSchema.generate(stageTypes: Fixtures.all.reversed(), backends: Fixtures.backends).prettyJSON)
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        #expect(schema["$id"] == .string("https://squeeze.dev/schemas/recipe.schema.json"))
        #expect(schema["additionalProperties"] == .bool(false))
        #expect(schema["required"] == .array([.string("version"), .string("name"), .string("stages")]))
        let stage = try #require(schema["$defs"]?["stage"])
        #expect(stage["properties"]?["uses"]?["enum"] == .array(Fixtures.all.map(\.type).sorted().map(Value.string)))
        guard case .array(let branches)? = stage["allOf"] else {
            Issue.record("no per-type branches")
            return
        }
        #expect(branches.count == Fixtures.all.count)
        let finetune = try #require(branches.first { $0["if"]?["properties"]?["uses"]?["const"] == .string("train/finetune") })
        let with = try #require(finetune["then"]?["properties"]?["with"])
        #expect(with["additionalProperties"] == .bool(false))
        #expect(with["required"] == .array([.string("model"), .string("data")]))
        #expect(with["properties"]?["epochs"]?["description"] == .string("Passes over the data."))
        #expect(with["properties"]?["epochs"]?["default"] == .int(3))
    }

    // MARK: Validation with an external validator

    /// Why the python `jsonschema` check cannot run here, or nil when it can.
    static let pythonMissing: String? = {
        let result = runPython(["-c", "import jsonschema"])
        return result?.status == 0 ? nil : "python3 with the `jsonschema` package is not installed"
    }()

    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    static let validRecipes: [String] = [
        RecipeLoaderTests.good,
        """
        version: 1
        name: minimal
        stages:
          hello: { uses: command, with: { run: [echo, hi], env: { A: b }, timeout: 2.5 } }
        """,
        """
        version: 1
        name: typed-vars
        vars: { e: 3, opt: sgd, flag: true }
        stages:
          base: { uses: model/import, with: { source: x } }
          data: { uses: data/load, with: { train: t.tsv } }
          t:
            uses: train/finetune
            needs: base
            with: { model: "${base.model}", data: "${data.dataset}", epochs: "${vars.e}", optimizer: "${vars.opt}" }
          c: { uses: command, with: { run: "echo", shell: "${vars.flag}" } }
        """,
    ]

    static let invalidRecipes: [(why: String, yaml: String)] = [
        ("unknown top-level key", "version: 1\nname: x\nstage: {}\nstages:\n  a: { uses: command, with: { run: [x] } }\n"),
        ("missing name", "version: 1\nstages:\n  a: { uses: command, with: { run: [x] } }\n"),
        ("version 2", "version: 2\nname: x\nstages:\n  a: { uses: command, with: { run: [x] } }\n"),
        ("bad name", "version: 1\nname: -x\nstages:\n  a: { uses: command, with: { run: [x] } }\n"),
        ("empty stages", "version: 1\nname: x\nstages: {}\n"),
        ("reserved stage id", "version: 1\nname: x\nstages:\n  env: { uses: command, with: { run: [x] } }\n"),
        ("missing uses", "version: 1\nname: x\nstages:\n  a: { with: { run: [x] } }\n"),
        ("unknown uses", "version: 1\nname: x\nstages:\n  a: { uses: nope }\n"),
        ("unknown stage key", "version: 1\nname: x\nstages:\n  a: { uses: command, wth: 1, with: { run: [x] } }\n"),
        ("unknown parameter", "version: 1\nname: x\nstages:\n  a: { uses: command, with: { run: [x], shel: true } }\n"),
        ("missing required parameter", "version: 1\nname: x\nstages:\n  a: { uses: command, with: { shell: true } }\n"),
        ("missing with", "version: 1\nname: x\nstages:\n  a: { uses: command }\n"),
        ("integer as string", "version: 1\nname: x\nstages:\n  t: { uses: train/finetune, with: { model: \"${a.b}\", data: \"${a.c}\", epochs: three } }\n"),
        ("artifact not a reference", "version: 1\nname: x\nstages:\n  t: { uses: train/finetune, with: { model: m.bin, data: \"${a.c}\" } }\n"),
        ("enum case", "version: 1\nname: x\nstages:\n  t: { uses: train/finetune, with: { model: \"${a.b}\", data: \"${a.c}\", optimizer: adamw } }\n"),
        ("oneOf", "version: 1\nname: x\nstages:\n  a: { uses: command, with: { run: 3 } }\n"),
        ("map of strings", "version: 1\nname: x\nstages:\n  a: { uses: command, with: { run: [x], env: { A: [1] } } }\n"),
        ("cores", "version: 1\nname: x\nstages:\n  a: { uses: command, resources: { cores: 0 }, with: { run: [x] } }\n"),
        ("negative seed", "version: 1\nname: x\nseed: -1\nstages:\n  a: { uses: command, with: { run: [x] } }\n"),
    ]

    @Test(.enabled(if: pythonMissing == nil || isCI, "python3 with the `jsonschema` package is not installed"))
    func externalValidatorAgreesWithTheLoader() throws {
        // Every "valid" example really loads; the schema must accept exactly those.
        for yaml in Self.validRecipes {
            _ = try Fixtures.load(yaml, environment: ["HOME": "/h"])
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-schema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let schemaPath = directory.appendingPathComponent("schema.json").path
        let instancesPath = directory.appendingPathComponent("instances.json").path
        try RecipeSchema.generate(stageTypes: Fixtures.all, backends: Fixtures.backends).prettyJSON.write(toFile: schemaPath, atomically: true, encoding: .utf8)

        var instances: [Value] = []
        for yaml in Self.validRecipes + Self.invalidRecipes.map(\.yaml) {
            let node = try #require(try YAMLParser.parse(yaml, file: "test.yaml"))
            instances.append(RecipeJSON.value(of: node))
        }
        try Value.array(instances).canonicalJSON.write(toFile: instancesPath, atomically: true, encoding: .utf8)

        let script = """
            import json, sys
            from jsonschema import Draft202012Validator
            schema = json.load(open(sys.argv[1]))
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema)
            for instance in json.load(open(sys.argv[2])):
                print("valid" if validator.is_valid(instance) else "invalid")
            """
        let result = try #require(Self.runPython(["-c", script, schemaPath, instancesPath]), "python3 could not be started")
        try #require(result.status == 0, "python failed: \(result.output)")
        let verdicts = result.output.split(separator: "\n").map(String.init)
        let expected = Array(repeating: "valid", count: Self.validRecipes.count)
            + Array(repeating: "invalid", count: Self.invalidRecipes.count)
        try #require(verdicts.count == expected.count, "unexpected output: \(result.output)")
        for (index, verdict) in verdicts.enumerated() where verdict != expected[index] {
            let what = index < Self.validRecipes.count
                ? "valid recipe #\(index)" : "invalid recipe (\(Self.invalidRecipes[index - Self.validRecipes.count].why))"
            Issue.record("the schema judged the \(what) \(verdict)")
        }
    }

    /// Runs python3; nil when it cannot be started.
    static func runPython(_ arguments: [String]) -> (status: Int32, output: String)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return nil
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
