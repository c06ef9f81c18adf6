import Foundation
import SqueezeRecipe
import SqueezeYAML
import Testing

/// The JSON Schema squeeze publishes agrees with squeeze: the committed copy is
/// current, every good recipe conforms, and what the schema rejects squeeze
/// rejects too. Validation uses python3's `jsonschema` (Draft 2020-12).
@Suite struct SchemaConformanceTests {
    @Test func committedSchemaIsCurrent() throws {
        let result = try SqueezeCLI.run(["schema"], timeout: 10)
        #expect(result.exitedNormally && result.status == 0, "\(result)")
        let file = Corpus.repository.appendingPathComponent("schemas/recipe.schema.json")
        let committed = try #require(
            FileManager.default.contents(atPath: file.path),
            "schemas/recipe.schema.json is missing; generate it with `squeeze schema > schemas/recipe.schema.json`")
        #expect(
            String(decoding: committed, as: UTF8.self) == result.stdout,
            "schemas/recipe.schema.json differs from `squeeze schema`; regenerate it")
    }

    @Test func schemaIsJSON() throws {
        let result = try SqueezeCLI.run(["schema"], timeout: 10)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        let schema = try #require(object as? [String: Any])
        #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
    }

    /// Without python3 and jsonschema the conformance test is skipped, which CI must not allow.
    @Test func validatorIsAvailableOnCI() {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            #expect(JSONSchemaValidator.unavailableReason == nil, "CI=true but \(JSONSchemaValidator.unavailableReason ?? "")")
        } else if let reason = JSONSchemaValidator.unavailableReason {
            print("SchemaConformanceTests: skipping schema validation: \(reason)")
        }
    }

    @Test(.enabled(if: JSONSchemaValidator.unavailableReason == nil, "python3 with the jsonschema module is not available"))
    func recipesAgreeWithTheSchema() throws {
        let project = try Project("schema")
        let schema = try SqueezeCLI.run(["schema"], timeout: 10)
        try #require(schema.status == 0, "\(schema)")
        let schemaFile = try project.write("recipe.schema.json", schema.stdout)

        let pipelines = Corpus.pipelines
        let good = Corpus.files(in: "good")
        let invalid = Corpus.badCases.filter { $0.schema == .invalid }
        #expect(!pipelines.isEmpty && !good.isEmpty && invalid.count >= 20)

        // One JSON file per recipe, then one python3 run for all of them.
        var jsonFiles: [String: URL] = [:]  // label -> JSON file
        for (index, file) in (pipelines + good + invalid.compactMap(\.file)).enumerated() {
            let node = try YAMLParser.parseFile(atPath: file.path)
            let value = node.map { RecipeJSON.value(of: $0) } ?? .null
            let label = file.path.replacingOccurrences(of: Corpus.repository.path + "/", with: "")
            jsonFiles[label] = try project.write("json/\(index).json", value.canonicalJSON)
        }
        let errors = try JSONSchemaValidator.validate(
            schema: schemaFile, instances: Array(jsonFiles.values), scratch: project)
        func schemaErrors(_ file: URL) -> [String]? {
            let label = file.path.replacingOccurrences(of: Corpus.repository.path + "/", with: "")
            return jsonFiles[label].flatMap { errors[$0.path] }
        }

        for file in pipelines + good {
            let found = try #require(schemaErrors(file), "no result for \(file.lastPathComponent)")
            #expect(found.isEmpty, "\(file.lastPathComponent) should conform to the schema: \(found)")
        }
        for testCase in invalid {
            guard let file = testCase.file else { continue }
            let found = try #require(schemaErrors(file), "no result for \(testCase.name)")
            #expect(!found.isEmpty, "the schema accepts \(testCase.name), which is marked `schema: invalid`")
            let squeeze = try SqueezeCLI.run(["validate", file.path], environment: testCase.environment, timeout: 10)
            #expect(squeeze.exitedNormally && squeeze.status == 2, "squeeze accepts \(testCase.name): \(squeeze)")
        }
    }
}

/// Runs python3's jsonschema over many instances at once.
enum JSONSchemaValidator {
    static let script = """
        import json, sys
        from jsonschema import Draft202012Validator
        schema = json.load(open(sys.argv[1], encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
        result = {}
        for path in sys.argv[2:]:
            instance = json.load(open(path, encoding="utf-8"))
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
            result[path] = ["/" + "/".join(map(str, e.absolute_path)) + ": " + e.message for e in errors][:5]
        print(json.dumps(result))
        """

    /// Nil when python3 can import jsonschema, or why not.
    static let unavailableReason: String? = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import jsonschema"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return "cannot start python3: \(error)"
        }
        process.waitUntilExit()
        return process.terminationStatus == 0 ? nil : "python3 cannot import jsonschema (run scripts/bootstrap.sh)"
    }()

    /// Schema errors for each instance file, keyed by its path.
    static func validate(schema: URL, instances: [URL], scratch: Project) throws -> [String: [String]] {
        let scriptFile = try scratch.write("validate.py", script)
        let output = try scratch.write("validate.out", "")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptFile.path, schema.path] + instances.map(\.path)
        process.standardOutput = try FileHandle(forWritingTo: output)
        let errorOutput = try scratch.write("validate.err", "")
        process.standardError = try FileHandle(forWritingTo: errorOutput)
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CorpusError(description: "jsonschema failed: \(scratch.read("validate.err") ?? "")")
        }
        let data = Data((scratch.read("validate.out") ?? "").utf8)
        return try JSONDecoder().decode([String: [String]].self, from: data)
    }
}
