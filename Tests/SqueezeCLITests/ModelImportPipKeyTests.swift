import Foundation
import SqueezeModels
import Testing

/// An unpinned `pip:` source is keyed by the wheel `pip download` fetches when
/// the key is made, and the run imports exactly that wheel. Wheels are served
/// from a local directory through pip's own environment (`PIP_NO_INDEX`,
/// `PIP_FIND_LINKS`): the same `pip download` as against PyPI, without network.
@Suite struct ModelImportPipKeyTests {
    static let unpinnedRecipe = """
        version: 1
        name: import
        stages:
          model:
            uses: model/import
            with:
              source: pip:fakepkg
        """

    static let pinnedRecipe = """
        version: 1
        name: import
        stages:
          model:
            uses: model/import
            with:
              source: pip:fakepkg==1.0
        """

    /// Builds `links/fakepkg-VERSION-py3-none-any.whl` holding a tiny model
    /// under `fakepkg/model/`; false (after saying why) when python3 cannot.
    static func buildWheel(_ project: Project, version: String, seed: UInt64) throws -> Bool {
        let source = project.url("wheel-\(version)")
        try ModelStagesTests.writeTinyModel(at: source.appendingPathComponent("fakepkg/model"), seed: seed)
        try project.write("wheel-\(version)/fakepkg/__init__.py", "")
        let distInfo = "wheel-\(version)/fakepkg-\(version).dist-info"
        try project.write("\(distInfo)/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: \(version)\n")
        try project.write("\(distInfo)/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        try project.write("\(distInfo)/RECORD", "")
        try FileManager.default.createDirectory(at: project.url("links"), withIntermediateDirectories: true)
        let zip = Process()
        zip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        zip.arguments = [
            "python3", "-m", "zipfile", "-c", project.path("links/fakepkg-\(version)-py3-none-any.whl"),
            "fakepkg", "fakepkg-\(version).dist-info",
        ]
        zip.currentDirectoryURL = source
        do { try zip.run() } catch {
            ModelStagesTests.skip("cannot run python3: \(error)")
            return false
        }
        zip.waitUntilExit()
        guard zip.terminationStatus == 0 else {
            ModelStagesTests.skip("python3 -m zipfile failed")
            return false
        }
        return true
    }

    /// Whether `python3 -m pip` runs here (said why not when it does not).
    static func pipIsAvailable() -> Bool {
        let pip = Process()
        pip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        pip.arguments = ["python3", "-m", "pip", "--version"]
        pip.standardOutput = FileHandle.nullDevice
        pip.standardError = FileHandle.nullDevice
        do { try pip.run() } catch {
            ModelStagesTests.skip("cannot run python3: \(error)")
            return false
        }
        pip.waitUntilExit()
        guard pip.terminationStatus == 0 else {
            ModelStagesTests.skip("python3 has no pip")
            return false
        }
        return true
    }

    static func pipEnvironment(_ project: Project) -> [String: String?] {
        ["PIP_NO_INDEX": "1", "PIP_FIND_LINKS": project.path("links"), "PIP_CONFIG_FILE": "/dev/null"]
    }

    /// Whether the run's imported weights are those of the wheel built from `wheel-VERSION`.
    static func imported(_ project: Project, _ result: SqueezeCLI.Result, version: String) throws -> Bool {
        let artifact = try ModelArtifact(directory: ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "model", output: "model"))
        #expect(artifact.manifest.source == "pip:fakepkg")
        return FileManager.default.contentsEqual(
            atPath: artifact.path(ModelArtifact.weightsFileName),
            andPath: project.path("wheel-\(version)/fakepkg/model/\(ModelArtifact.weightsFileName)"))
    }

    @Test func unpinnedSourceIsKeyedByTheFetchedWheel() throws {
        guard Self.pipIsAvailable() else { return }
        let project = try Project("model-import-pip-unpinned")
        guard try Self.buildWheel(project, version: "1.0", seed: 1) else { return }
        try project.write("recipe/recipe.yaml", Self.unpinnedRecipe)
        let environment = Self.pipEnvironment(project)

        let first = try project.run(environment: environment, timeout: 120)
        try #require(first.status == 0, "\(first)")
        #expect(try Self.imported(project, first, version: "1.0"))
        // The run imported the wheel fetched for its key; it fetched nothing again.
        let runID = try #require(first.runID)
        let log = try #require(project.read("runs/\(runID)/logs/model.log"))
        #expect(log.contains("importing fakepkg-1.0-py3-none-any.whl, the wheel fetched when the cache key was made"), "\(log)")
        #expect(!log.contains("pip download"), "\(log)")

        var plan = try CLIBehaviourTests.plan(project, environment: environment)
        #expect(plan["model"]?.status == "cached", "\(plan)")

        // A new release on the index: the fetched wheel differs, so the import is stale.
        guard try Self.buildWheel(project, version: "2.0", seed: 5) else { return }
        plan = try CLIBehaviourTests.plan(project, environment: environment)
        let stale = try #require(plan["model"])
        #expect(stale.status == "run")
        #expect(
            stale.reason == "content changed: source (`pip:fakepkg@fakepkg-1.0-py3-none-any.whl` → `pip:fakepkg@fakepkg-2.0-py3-none-any.whl`)",
            "\(stale.reason)")

        let second = try project.run(environment: environment, timeout: 120)
        try #require(second.status == 0, "\(second)")
        #expect(try project.record(of: second).stage("model")?.cache == "miss")
        #expect(try Self.imported(project, second, version: "2.0"))

        // Nothing changed: fully cached.
        let third = try project.run(environment: environment, timeout: 120)
        try #require(third.status == 0, "\(third)")
        #expect(try project.record(of: third).stage("model")?.cache == "hit")
        #expect(try project.record(of: third).stage("model")?.key == project.record(of: second).stage("model")?.key)

        // Plans and runs leave no fetched wheel behind in the store.
        let leftovers = FileManager.default.enumerator(atPath: project.cacheDirectory)?.allObjects
            .compactMap { $0 as? String }.filter { $0.hasSuffix(".whl") } ?? []
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// A pinned source is keyed by its text alone: planning runs no pip (here
    /// there is neither python3 on PATH nor an index pip could reach), and
    /// the key is the one computed with pip at hand, and the one squeeze
    /// computed before unpinned `pip:` sources were keyed by their wheel.
    @Test func pinnedSourceFetchesNothingToPlan() throws {
        let project = try Project("model-import-pip-pinned")
        try project.write("recipe/recipe.yaml", Self.pinnedRecipe)
        let withPip = try CLIBehaviourTests.plan(project)
        let withoutPip = try CLIBehaviourTests.plan(project, environment: [
            "PATH": project.path("no-such-bin"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": project.path("no-such-links"),
        ])
        #expect(withoutPip["model"]?.status == "run")
        #expect(withoutPip["model"]?.reason == "no cache entry")
        #expect(withoutPip["model"]?.key != nil)
        #expect(withoutPip["model"]?.key == withPip["model"]?.key)
        #expect(withoutPip["model"]?.key == "f649e3f6970efc200897fa8faa069efccb82f9a3c363d4eddca8efd6289af65d")
    }

    /// Key-time failures are clear: bad input for `plan` (exit 2, naming the
    /// stage), a failed stage for `run` (exit 1).
    @Test func unpinnedSourceThatCannotBeFetchedIsAClearError() throws {
        let project = try Project("model-import-pip-missing")
        try project.write("recipe/recipe.yaml", Self.unpinnedRecipe)

        let noPython = try project.squeeze(
            ["plan", "recipe/recipe.yaml"] + project.storage(), environment: ["PATH": project.path("no-such-bin")])
        #expect(noPython.exitedNormally && noPython.status == 2, "\(noPython)")
        #expect(noPython.stderr.contains("stage `model`: `pip:` sources need python3 with pip, and python3 is not on PATH"), "\(noPython)")

        guard Self.pipIsAvailable() else { return }
        try FileManager.default.createDirectory(at: project.url("links"), withIntermediateDirectories: true)
        let environment = Self.pipEnvironment(project)
        let plan = try project.squeeze(["plan", "recipe/recipe.yaml"] + project.storage(), environment: environment, timeout: 120)
        #expect(plan.exitedNormally && plan.status == 2, "\(plan)")
        #expect(plan.stderr.contains("stage `model`: pip download of `fakepkg` failed with exit status 1: "), "\(plan)")
        #expect(plan.stderr.contains("No matching distribution found for fakepkg"), "\(plan)")

        let run = try project.run(environment: environment, timeout: 120)
        #expect(run.exitedNormally && run.status == 1, "\(run)")
        #expect(run.stderr.contains("pip download of `fakepkg` failed with exit status 1: "), "\(run)")
    }
}
