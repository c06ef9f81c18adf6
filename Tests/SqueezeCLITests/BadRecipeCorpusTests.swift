import Foundation
import Testing

/// Every file in recipes/bad is a recipe squeeze must refuse (exit 2) or fail
/// to run (exit 1), with the message and position its header promises.
@Suite struct BadRecipeCorpusTests {
    @Test func corpusIsLargeAndWellNamed() {
        let files = Corpus.files(in: "bad")
        #expect(files.count >= 64)
        let numbers = files.map { $0.lastPathComponent.prefix(3) }
        #expect(Set(numbers).count == numbers.count, "case numbers must be unique")
        for file in files {
            let name = file.lastPathComponent
            #expect(name.range(of: #"^[0-9]{3}-[a-z0-9-]+\.yaml$"#, options: .regularExpression) != nil, "\(name)")
        }
        // Every sidecar belongs to a case.
        let folder = Corpus.directory.appendingPathComponent("bad")
        let sidecars = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".expect") }
        for sidecar in sidecars {
            let recipe = folder.appendingPathComponent(String(sidecar.dropLast(".expect".count)) + ".yaml")
            #expect(FileManager.default.fileExists(atPath: recipe.path), "\(sidecar) has no recipe")
        }
    }

    @Test(arguments: Corpus.badCases)
    func badRecipe(_ testCase: BadCase) throws {
        #expect(testCase.headerProblems.isEmpty, "\(testCase.name): \(testCase.headerProblems)")
        let scratch = try Project("bad")
        let directory: URL
        let fileArgument: String
        var arguments: [String]
        switch (testCase.command, testCase.file) {
        case (.validate, let file?):
            // Validation writes nothing: run it on the committed file, named
            // relative to the corpus directory to check FILE is echoed as given.
            directory = Corpus.directory
            fileArgument = "bad/\(file.lastPathComponent)"
            arguments = ["validate", fileArgument]
        case (.validate, nil):
            try FileManager.default.createDirectory(at: scratch.url("gen"), withIntermediateDirectories: true)
            fileArgument = "gen/" + (try testCase.materialize(into: scratch.url("gen")))
            directory = scratch.root
            arguments = ["validate", fileArgument]
        case (.run, let file):
            // A run writes logs, cache entries and, for some cases, stray files
            // beside the recipe: work on a copy.
            try FileManager.default.createDirectory(at: scratch.url("project"), withIntermediateDirectories: true)
            if let file {
                try FileManager.default.copyItem(at: file, to: scratch.url("project/\(file.lastPathComponent)"))
                fileArgument = "project/\(file.lastPathComponent)"
            } else {
                fileArgument = "project/" + (try testCase.materialize(into: scratch.url("project")))
            }
            directory = scratch.root
            arguments = ["run", fileArgument] + scratch.storage()
        }
        arguments += testCase.arguments

        let result = try SqueezeCLI.run(
            arguments, in: directory, environment: testCase.environment, timeout: testCase.command == .run ? 20 : 10)
        #expect(!result.timedOut, "\(testCase.name) did not finish: \(result)")
        #expect(result.exitedNormally, "\(testCase.name) crashed: \(result)")
        #expect(result.status == testCase.expectedExit, "\(testCase.name): \(result)")
        #expect(!result.stderr.contains("Fatal error"), "\(testCase.name): \(result)")
        if let maxSeconds = testCase.maxSeconds {
            #expect(result.seconds < maxSeconds, "\(testCase.name) took \(result.seconds) s")
        }

        let diagnostics = Self.diagnostics(in: result.stderr)
        for expected in testCase.errors {
            if let line = expected.line, let column = expected.column {
                let position = "\(fileArgument):\(line):\(column): "
                let matching = diagnostics.filter { $0.hasPrefix(position) }
                #expect(!matching.isEmpty, "\(testCase.name): no diagnostic at \(position)\n\(result.stderr)")
                #expect(
                    matching.contains { $0.contains(expected.fragment) },
                    "\(testCase.name): no `\(expected.fragment)` at \(position)\n\(result.stderr)")
            } else {
                #expect(result.stderr.contains(expected.fragment), "\(testCase.name): no `\(expected.fragment)`\n\(result.stderr)")
            }
        }
        if testCase.expectedExit == 2, testCase.command == .validate {
            #expect(result.stdout.isEmpty, "\(testCase.name): validate printed to stdout: \(result.stdout)")
        }
        if testCase.command == .run, testCase.expectedExit == 1 {
            try checkFailedRunLeftNoEntry(scratch, result: result, testCase: testCase)
        }
        if testCase.command == .run, testCase.expectedExit == 2 {
            let runs = (try? FileManager.default.contentsOfDirectory(atPath: scratch.runsDirectory)) ?? []
            #expect(runs.isEmpty, "\(testCase.name): a refused recipe left run folders \(runs)")
        }
    }

    /// The run record says failed, and no cache entry exists for a failed stage.
    private func checkFailedRunLeftNoEntry(_ scratch: Project, result: SqueezeCLI.Result, testCase: BadCase) throws {
        let run = try scratch.record(of: result)
        #expect(run.status == "failed", "\(testCase.name): run status \(run.status)")
        let failed = run.stages.filter { $0.status == "failed" }
        #expect(!failed.isEmpty, "\(testCase.name): no failed stage in the run record")
        let entries = try scratch.cacheEntries()
        for stage in failed {
            #expect(!entries.contains { $0.stageID == stage.id }, "\(testCase.name): cache entry for failed stage `\(stage.id)`")
            if let key = stage.key {
                #expect(!entries.contains { $0.key == key }, "\(testCase.name): cache entry under the failed key")
            }
        }
        #expect(try scratch.verifyCache().status == 0)
    }

    /// stderr split into diagnostics: a line and the indented hint lines after it.
    static func diagnostics(in stderr: String) -> [String] {
        var result: [String] = []
        for line in stderr.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(" "), let last = result.indices.last {
                result[last] += "\n" + line
            } else if !line.isEmpty {
                result.append(String(line))
            }
        }
        return result
    }
}
