import Foundation
import Testing

/// Bad input gets `error: …` saying what is wrong and what to do, and exit 2:
/// never a raw Foundation or libyaml message, never ArgumentParser's `Error:`.
@Suite struct InputErrorMessageTests {
    static let recipe = """
        version: 1
        name: messages
        vars:
          flavour: plain
          epochs: 3
        stages:
          hello:
            uses: command
            with:
              run: [sh, -c, 'echo "$FLAVOUR" > "$SQUEEZE_OUT/hello.txt"']
              env: {FLAVOUR: "${vars.flavour}"}
              outputs: [hello.txt]
        """

    static func project() throws -> Project {
        let project = try Project("messages")
        try project.write("recipe/recipe.yaml", recipe)
        return project
    }

    static func expectInputError(_ result: SqueezeCLI.Result, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.exitedNormally && result.status == 2, "\(result)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("error: ") || result.stderr.contains(": error: "), "\(result)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(result.stderr.contains(fragment), "missing `\(fragment)`: \(result)", sourceLocation: sourceLocation)
        }
        for raw in ["NSCocoaErrorDomain", "Error Domain", "Error: ", "did not find expected node content"] {
            #expect(!result.stderr.contains(raw), "raw `\(raw)`: \(result)", sourceLocation: sourceLocation)
        }
    }

    @Test func aRunsDirectoryThatIsAFile() throws {
        let project = try Self.project()
        try project.write("runs", "not a directory")
        let expected = ["the runs directory \(project.runsDirectory) is a regular file, not a directory", "--runs-dir"]
        Self.expectInputError(try project.squeeze(["runs", "list"] + project.storage()), expected)
        Self.expectInputError(try project.squeeze(["runs", "show", "latest"] + project.storage()), expected)
        Self.expectInputError(try project.run(), expected)
        Self.expectInputError(try project.squeeze(["cache", "gc"] + project.storage()), expected)
    }

    @Test func anEmptyMatrixValue() throws {
        let project = try Self.project()
        let result = try project.squeeze(["validate", "recipe/recipe.yaml", "--matrix", "vars.flavour=a,,b"])
        Self.expectInputError(result, ["`--matrix vars.flavour=a,,b`: cannot read `a,,b` as a comma-separated list", "hint: give a value between every two commas"])
    }

    @Test func unparsableSetValue() throws {
        let project = try Self.project()
        let result = try project.squeeze(["validate", "recipe/recipe.yaml", "--set", "vars.flavour=[a"])
        Self.expectInputError(result, ["`--set vars.flavour=[a`: cannot read the value `[a`", "quote one meant as text"])
    }

    @Test func anIntegerTooLargeForSixtyFourBits() throws {
        let project = try Self.project()
        try project.write("recipe/huge.yaml", Self.recipe.replacingOccurrences(
            of: "outputs: [hello.txt]", with: "outputs: [hello.txt]\n      timeout: 99999999999999999999"))
        let inRecipe = try project.squeeze(["validate", "recipe/huge.yaml"])
        Self.expectInputError(inRecipe, ["recipe/huge.yaml:13:16: error: ", "99999999999999999999, an integer outside the 64-bit range"])
        #expect(!inRecipe.stderr.contains("got a string"), "\(inRecipe)")

        let set = try project.squeeze(["validate", "recipe/recipe.yaml", "--set", "vars.epochs=99999999999999999999"])
        Self.expectInputError(set, ["variable `epochs` is an integer, got 99999999999999999999, an integer outside the 64-bit range"])
    }

    @Test(arguments: [["--jobs", "-1"], ["-j", "-1"]])
    func aNegativeJobCount(_ flags: [String]) throws {
        let project = try Self.project()
        let result = try project.run("recipe/recipe.yaml", flags)
        Self.expectInputError(result, ["error: --jobs must be at least 1", "got -1"])
        #expect(!result.stderr.contains("Missing value"), "\(result)")
    }

    @Test func garbageCollectionOfABusyStore() throws {
        let project = try Self.project()
        try project.write("recipe/slow.yaml", """
            version: 1
            name: busy
            stages:
              slow:
                uses: command
                with:
                  run: [sh, -c, 'touch "$MARKER"; sleep 20']
                  env: {MARKER: "\(project.path("started"))"}
            """)
        #expect(try project.run().status == 0)
        let running = try SqueezeCLI.start(["run", "recipe/slow.yaml"] + project.storage(), in: project.root)
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: project.path("started")), Date() < deadline, running.isRunning { usleep(10_000) }
        let gc = try project.squeeze(["cache", "gc"] + project.storage())
        running.send(SIGINT)
        _ = running.wait(timeout: 15)
        Self.expectInputError(gc, ["another squeeze process is using the store", "wait for it to finish"])
    }

    @Test func htmlIntoAMissingFolderOrOntoADevice() throws {
        let project = try Self.project()
        #expect(try project.run().status == 0)
        let missing = try project.squeeze(["report", "latest", "--html", "pages/report.html"] + project.storage())
        Self.expectInputError(missing, ["error: --html: cannot write pages/report.html: the folder pages does not exist; create it first"])
        #expect(!FileManager.default.fileExists(atPath: project.path("pages")))

        if FileManager.default.fileExists(atPath: "/dev/full") {
            let full = try project.squeeze(["report", "latest", "--html", "/dev/full"] + project.storage())
            Self.expectInputError(full, ["cannot write /dev/full", "No space left on device"])
            let kind = try FileManager.default.attributesOfItem(atPath: "/dev/full")[.type] as? FileAttributeType
            #expect(kind == .typeCharacterSpecial, "/dev/full is still a device")
        }

        try FileManager.default.createDirectory(atPath: project.path("pages"), withIntermediateDirectories: false)
        try project.write("pages/real.html", "old")
        try FileManager.default.createSymbolicLink(atPath: project.path("link.html"), withDestinationPath: "pages/real.html")
        let viaLink = try project.squeeze(["report", "latest", "--html", "link.html"] + project.storage())
        #expect(viaLink.status == 0, "\(viaLink)")
        #expect(project.read("pages/real.html")?.contains("<html") == true)
        let kind = try FileManager.default.attributesOfItem(atPath: project.path("link.html"))[.type] as? FileAttributeType
        #expect(kind == .typeSymbolicLink)
    }
}
