import Foundation
import SqueezeServersTestSupport
import SqueezeTensor
import Testing

/// The shared HTTP cache as a user meets it, against a real nginx on loopback
/// (WebDAV `PUT`): `squeeze run --remote`, a second cache directory standing
/// for a second machine, `plan`, `cache push`/`pull`, credentials.
@Suite struct RemoteCacheCLITests {
    static func server(authentication: (user: String, password: String)? = nil) throws -> NginxServer? {
        guard ExternalRequirement.check(NginxServer.unavailableReason, record: { Issue.record(Comment(rawValue: $0)) }) else { return nil }
        return try NginxServer(authentication: authentication)
    }

    /// A `command` stage that appends a line to `$SQUEEZE_TEST_COUNTER` (a
    /// file outside every cache) each time it really runs.
    static let countingStage = """
          count:
            uses: command
            with:
              shell: true
              run: |
                echo ran >> "$SQUEEZE_TEST_COUNTER"
                printf 'counted\\n' > "$SQUEEZE_OUT/out.txt"
              outputs: [out.txt]
        """

    /// The tiny sentiment project: model import, data, the counting stage and
    /// a one-epoch fine-tune of the tiny BERT (a tensor stage).
    static func project(_ label: String, teacher: Bool = true) throws -> Project {
        let stages = countingStage + (teacher ? "\n" + TinySentiment.teacherStage(length: "epochs: 1") : "")
        return try TinySentiment.makeProject(label, recipe: TinySentiment.recipe(name: "remote", stages: stages))
    }

    static func counterEnvironment(_ project: Project, _ extra: [String: String?] = [:]) -> [String: String?] {
        extra.merging(["SQUEEZE_TEST_COUNTER": project.path("counter")]) { $1 }
    }

    static func runCount(_ project: Project) -> Int {
        (project.read("counter") ?? "").split(separator: "\n").count
    }

    /// `run` on the project's recipe with another cache directory (another machine).
    static func run(
        _ project: Project, cache: String, flags: [String] = [], environment: [String: String?] = [:]
    ) throws -> SqueezeCLI.Result {
        try project.squeeze(
            ["run", "recipe/recipe.yaml"] + project.storage(cache: project.path(cache)) + flags,
            environment: counterEnvironment(project, environment), timeout: 300)
    }

    static func plan(_ project: Project, cache: String, flags: [String] = [], environment: [String: String?] = [:]) throws -> [String: CLIBehaviourTests.PlanLine] {
        let result = try project.squeeze(
            ["plan", "recipe/recipe.yaml", "--json"] + project.storage(cache: project.path(cache)) + flags,
            environment: counterEnvironment(project, environment))
        try #require(result.exitedNormally && result.status == 0, "\(result)")
        let lines = try JSONDecoder().decode([CLIBehaviourTests.PlanLine].self, from: Data(result.stdout.utf8))
        return Dictionary(uniqueKeysWithValues: lines.map { ($0.id, $0) })
    }

    /// Each stage's metrics in a run record, as canonical JSON text.
    static func metrics(_ project: Project, _ result: SqueezeCLI.Result) throws -> [String: String] {
        let id = try #require(result.runID)
        let data = try #require(FileManager.default.contents(atPath: project.path("runs/\(id)/run.json")))
        let record = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .array(let stages)? = record["stages"] else { return [:] }
        var metrics: [String: String] = [:]
        for stage in stages {
            if let id = stage["id"]?.string { metrics[id] = stage["metrics"]?.canonical ?? "" }
        }
        return metrics
    }

    // MARK: Miss, upload, remote hit

    @Test func aSecondCacheTakesEveryStageFromTheRemoteWithIdenticalOutputs() throws {
        guard let server = try Self.server() else { return }
        let project = try Self.project("remote-hit")
        let remote = ["--remote", server.baseURL.appendingPathComponent("squeeze").absoluteString]

        let first = try Self.run(project, cache: "cache-a", flags: remote)
        try #require(first.status == 0, "\(first)")
        #expect(Self.runCount(project) == 1)
        let firstRecord = try project.record(of: first)
        #expect(firstRecord.stages.allSatisfy { $0.status == "ran" && $0.cache == "miss" }, "\(first)")
        // Every entry and every output is on the server.
        for stage in firstRecord.stages {
            let key = try #require(stage.key)
            #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/squeeze/ac/" + key), "\(stage.id)")
        }
        let objects = try FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/squeeze/cas")
        #expect(objects.count >= firstRecord.stages.count)

        // Another machine: a fresh cache directory plans every stage `remote`…
        let plan = try Self.plan(project, cache: "cache-b", flags: remote)
        #expect(plan.values.allSatisfy { $0.status == "remote" }, "\(plan)")
        #expect(try Self.plan(project, cache: "cache-b").values.contains { $0.status == "run" }, "without --remote it is stale")

        // …and runs none of them.
        let second = try Self.run(project, cache: "cache-b", flags: remote)
        try #require(second.status == 0, "\(second)")
        #expect(Self.runCount(project) == 1, "nothing recomputed")
        let secondRecord = try project.record(of: second)
        #expect(secondRecord.stages.allSatisfy { $0.status == "cached" && $0.cache == "remote" }, "\(second)")
        #expect(second.stderr.contains("count: cached (remote)"), "\(second)")
        #expect(second.stdout.contains("(4 from the remote cache)"), "\(second)")
        for stage in firstRecord.stages {
            #expect(secondRecord.stage(stage.id)?.outputs == stage.outputs, "\(stage.id)")
            #expect(secondRecord.stage(stage.id)?.key == stage.key, "\(stage.id)")
        }
        #expect(try Self.metrics(project, second) == Self.metrics(project, first))
        #expect(try Self.metrics(project, first)["teacher"]?.contains("accuracy") == true)
        let verify = try project.verifyCache(cache: project.path("cache-b"))
        #expect(verify.status == 0, "\(verify)")

        // Now local: hits, and no request reaches the server with --no-remote.
        let requests = server.accessLines().count
        let third = try Self.run(project, cache: "cache-b", flags: ["--no-remote"], environment: ["SQUEEZE_REMOTE_CACHE": remote[1]])
        try #require(third.status == 0, "\(third)")
        #expect(try project.record(of: third).stages.allSatisfy { $0.cache == "hit" })
        #expect(server.accessLines().count == requests)
    }

    /// The site file's `cache.remote` is used when neither `--remote` nor
    /// `$SQUEEZE_REMOTE_CACHE` names a remote, by `plan`, `run` and `cache pull`.
    @Test func theSiteFilesRemoteIsUsedWithoutFlags() throws {
        guard let server = try Self.server() else { return }
        let project = try Self.project("site-remote", teacher: false)
        let url = server.baseURL.appendingPathComponent("squeeze").absoluteString
        let first = try Self.run(project, cache: "cache-a", flags: ["--remote", url])
        try #require(first.status == 0, "\(first)")
        try project.write("recipe/squeeze-site.yaml", "cache:\n  remote: \(url)\n")
        #expect(try Self.plan(project, cache: "cache-b").values.allSatisfy { $0.status == "remote" })
        #expect(try Self.plan(project, cache: "cache-b", flags: ["--no-remote"]).values.allSatisfy { $0.status == "run" })
        let pull = try project.squeeze(["cache", "pull", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache-b")))
        #expect(pull.status == 0, "\(pull)")
        let second = try Self.run(project, cache: "cache-b")
        try #require(second.status == 0, "\(second)")
        #expect(try project.record(of: second).stages.allSatisfy { $0.cache == "hit" }, "pulled before the run")
        #expect(Self.runCount(project) == 1)
    }

    // MARK: Corruption

    @Test func aCorruptRemoteObjectIsDetectedAndTheStageRecomputedAndReuploaded() throws {
        guard let server = try Self.server() else { return }
        let project = try Self.project("remote-corrupt", teacher: false)
        let environment: [String: String?] = ["SQUEEZE_REMOTE_CACHE": server.baseURL.absoluteString]
        let first = try Self.run(project, cache: "cache-a", environment: environment)
        try #require(first.status == 0, "\(first)")
        let count = try #require(try project.record(of: first).stage("count"))
        let output = try #require(count.outputs["out"])
        let digest = try #require(output.raw.split(separator: "\"").first { $0.hasPrefix("sha256:") }).dropFirst(7)
        let served = server.dataDirectory + "/cas/" + digest
        let good = try #require(FileManager.default.contents(atPath: served))
        storeTestFlipFirstByte(served)

        let second = try Self.run(project, cache: "cache-b", environment: environment)
        try #require(second.status == 0, "\(second)")
        #expect(second.stderr.contains("remote object sha256:\(digest) is corrupt"), "\(second)")
        let recomputed = try #require(try project.record(of: second).stage("count"))
        #expect(recomputed.status == "ran" && recomputed.cache == "miss", "\(recomputed)")
        #expect(recomputed.reason?.contains("remote entry not usable; recomputing") == true, "\(recomputed)")
        #expect(recomputed.outputs == count.outputs)
        #expect(Self.runCount(project) == 2)
        #expect(FileManager.default.contents(atPath: served) == good, "the good copy was uploaded again")

        let third = try Self.run(project, cache: "cache-c", environment: environment)
        try #require(third.status == 0, "\(third)")
        #expect(try project.record(of: third).stage("count")?.cache == "remote")
        #expect(Self.runCount(project) == 2)
    }

    // MARK: The server gone

    @Test func aServerThatIsGoneIsOneWarningAndTheRunContinuesLocally() throws {
        guard let server = try Self.server() else { return }
        let url = server.baseURL.absoluteString
        server.stop()
        let project = try Self.project("remote-gone", teacher: false)
        let result = try Self.run(project, cache: "cache-a", flags: ["--remote", url])
        #expect(result.status == 0, "\(result)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.contains("remote cache") }
        #expect(warnings.count == 1, "\(result)")
        #expect(warnings.first?.contains("is not usable") == true && warnings.first?.contains("local cache only") == true, "\(result)")
        #expect(try project.record(of: result).stages.allSatisfy { $0.status == "ran" })
        #expect(Self.runCount(project) == 1)

        let plan = try project.squeeze(
            ["plan", "recipe/recipe.yaml", "--remote", url] + project.storage(cache: project.path("cache-b")))
        #expect(plan.status == 0, "\(plan)")
        #expect(plan.stderr.components(separatedBy: "is not usable").count == 2, "one warning: \(plan)")
    }

    // MARK: Read-only access

    /// A server that refuses uploads (read-only credentials, a pull-request
    /// job): one warning, and the run keeps reading from it.
    @Test func aServerThatRefusesUploadsIsStillReadFrom() throws {
        guard let writable = try Self.server() else { return }
        let project = try Self.project("remote-read-only", teacher: false)
        let first = try Self.run(project, cache: "cache-a", flags: ["--remote", writable.baseURL.absoluteString])
        try #require(first.status == 0, "\(first)")
        writable.stop()
        let readOnly = try NginxServer(readOnly: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: writable.dataDirectory) {
            try FileManager.default.copyItem(atPath: writable.dataDirectory + "/" + name, toPath: readOnly.dataDirectory + "/" + name)
        }
        let second = try Self.run(project, cache: "cache-b", flags: ["--remote", readOnly.baseURL.absoluteString, "--force", "count"])
        try #require(second.status == 0, "\(second)")
        let record = try project.record(of: second)
        #expect(record.stage("count")?.status == "ran", "\(second)")
        #expect(record.stage("base")?.cache == "remote" && record.stage("data")?.cache == "remote", "\(second)")
        let warnings = second.stderr.split(separator: "\n").filter { $0.hasPrefix("warning:") }
        #expect(warnings.count == 1 && warnings.first?.contains("refuses uploads") == true, "\(second)")
        #expect(warnings.first?.contains("HTTP 403") == true, "\(second)")
    }

    // MARK: Bad input

    /// A remote that is not an http(s) URL is bad input (exit 2), named by
    /// where it came from and never echoed: it may hold a password.
    @Test func aMalformedRemoteIsBadInputAndNotEchoed() throws {
        let project = try Self.project("remote-malformed", teacher: false)
        let flag = try Self.run(project, cache: "cache-a", flags: ["--remote", "ftp://user:hunter2@host/x"])
        #expect(flag.status == 2, "\(flag)")
        #expect(flag.stderr.contains("--remote must be an http:// or https:// URL"), "\(flag)")
        #expect(!flag.stderr.contains("hunter2"), "\(flag)")
        let variable = try Self.run(project, cache: "cache-a", environment: ["SQUEEZE_REMOTE_CACHE": "user:hunter2@host"])
        #expect(variable.status == 2, "\(variable)")
        #expect(variable.stderr.contains("$SQUEEZE_REMOTE_CACHE must be"), "\(variable)")
        #expect(!variable.stderr.contains("hunter2"), "\(variable)")
        #expect(Self.runCount(project) == 0)
    }

    /// A bad site file is bad input (exit 2) for `run`, `plan` and `cache
    /// pull`, reported at its position without echoing the URL; so is a
    /// `$SQUEEZE_SITE` that names no file.
    @Test func aBadOrMissingSiteFileIsBadInput() throws {
        let project = try Self.project("site-bad", teacher: false)
        try project.write("recipe/squeeze-site.yaml", "cache:\n  remote: ftp://user:hunter2@host/x\n")
        let storage = project.storage(cache: project.path("cache-a"))
        for command in [["run"], ["plan"], ["cache", "pull"]] {
            let result = try project.squeeze(command + ["recipe/recipe.yaml"] + storage)
            #expect(result.status == 2, "\(command): \(result)")
            #expect(result.stderr.contains("squeeze-site.yaml:2:11"), "\(command): \(result)")
            #expect(result.stderr.contains("`cache.remote` must be an http:// or https:// URL"), "\(command): \(result)")
            #expect(!result.stderr.contains("hunter2"), "\(command): \(result)")
        }
        try FileManager.default.removeItem(atPath: project.path("recipe/squeeze-site.yaml"))
        let missing = try project.squeeze(
            ["plan", "recipe/recipe.yaml"] + storage, environment: ["SQUEEZE_SITE": project.path("nowhere.yaml")])
        #expect(missing.status == 2, "\(missing)")
        #expect(missing.stderr.contains("nowhere.yaml (from $SQUEEZE_SITE) does not exist"), "\(missing)")
        #expect(Self.runCount(project) == 0)
    }

    // MARK: push and pull

    @Test func pushThenPullFillsAnotherCache() throws {
        guard let server = try Self.server() else { return }
        let project = try Self.project("remote-push", teacher: false)
        let remote = ["--remote", server.baseURL.absoluteString]
        let first = try Self.run(project, cache: "cache-a")
        try #require(first.status == 0, "\(first)")
        #expect(server.accessLines().isEmpty, "no remote without --remote")

        let push = try project.squeeze(["cache", "push"] + project.storage(cache: project.path("cache-a")) + remote)
        #expect(push.status == 0, "\(push)")
        #expect(push.stdout.contains("pushed 3 entries of run \(first.runID ?? "?")"), "\(push)")
        let again = try project.squeeze(["cache", "push", first.runID ?? "latest"] + project.storage(cache: project.path("cache-a")) + remote)
        #expect(again.stdout.contains("pushed 0 entries") && again.stdout.contains("3 entries were there already"), "\(again)")

        let pull = try project.squeeze(
            ["cache", "pull", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache-b")) + remote,
            environment: Self.counterEnvironment(project))
        #expect(pull.status == 0, "\(pull)")
        #expect(pull.stdout.contains("pulled 3 entries"), "\(pull)")
        let second = try Self.run(project, cache: "cache-b")
        try #require(second.status == 0, "\(second)")
        #expect(try project.record(of: second).stages.allSatisfy { $0.cache == "hit" }, "\(second)")
        #expect(Self.runCount(project) == 1)

        let noRemote = try project.squeeze(["cache", "push"] + project.storage(cache: project.path("cache-a")))
        #expect(noRemote.status == 2 && noRemote.stderr.contains("--remote"), "\(noRemote)")
    }

    // MARK: Credentials

    @Test func credentialsWorkAndAppearNowhere() throws {
        let password = "pw-\(UUID().uuidString.prefix(8))"
        guard let server = try Self.server(authentication: (user: "ci", password: password)) else { return }
        let project = try Self.project("remote-credentials", teacher: false)
        let secretURL = "http://ci:\(password)@127.0.0.1:\(server.port)/squeeze"
        let first = try Self.run(project, cache: "cache-a", environment: ["SQUEEZE_REMOTE_CACHE": secretURL])
        try #require(first.status == 0, "\(first)")
        #expect(!first.stderr.contains("warning"), "\(first)")

        // The same credentials from a netrc file, with a plain URL.
        try project.write("netrc", "machine 127.0.0.1 login ci password \(password)\n")
        let plainURL = "http://127.0.0.1:\(server.port)/squeeze"
        let second = try Self.run(project, cache: "cache-b", flags: ["--remote", plainURL], environment: ["NETRC": project.path("netrc")])
        try #require(second.status == 0, "\(second)")
        #expect(try project.record(of: second).stages.allSatisfy { $0.cache == "remote" }, "\(second)")
        let plan = try project.squeeze(
            ["plan", "recipe/recipe.yaml", "--json"] + project.storage(cache: project.path("cache-c")),
            environment: ["SQUEEZE_REMOTE_CACHE": secretURL])

        // Refused credentials: one warning, the run goes on locally.
        let refused = try Self.run(
            project, cache: "cache-d", environment: ["SQUEEZE_REMOTE_CACHE": "http://ci:wrong@127.0.0.1:\(server.port)/squeeze"])
        #expect(refused.status == 0, "\(refused)")
        #expect(refused.stderr.contains("HTTP 401"), "\(refused)")
        #expect(!refused.stderr.contains("wrong@"), "\(refused)")

        for result in [first, second, plan, refused] {
            #expect(!result.stdout.contains(password) && !result.stderr.contains(password), "\(result)")
        }
        let record = try #require(FileManager.default.contents(atPath: project.path("runs/\(first.runID ?? "")/run.json")))
        #expect(String(decoding: record, as: UTF8.self).contains("\"remoteCache\": \"http://127.0.0.1:\(server.port)/squeeze\""))
        let runs = FileManager.default.enumerator(atPath: project.runsDirectory)
        var files = 0
        while let relative = runs?.nextObject() as? String {
            let path = project.runsDirectory + "/" + relative
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            files += 1
            #expect(!String(decoding: data, as: UTF8.self).contains(password), "\(relative)")
        }
        #expect(files >= 4)
    }

    // MARK: Another backend's arithmetic

    /// A teacher computed with other kernels (Squeeze's baseline ones, forced
    /// with SQUEEZE_KERNELS) is on the server under another key: `plan` says
    /// so and `run` recomputes it, taking only the stages without tensors.
    @Test func anEntryOfAnotherBackendFingerprintIsReportedAndNotUsed() throws {
        guard CPUKernels.detectedTier > .baseline else {
            print("skipped: this CPU runs the baseline kernels only; there is no other fingerprint to force")
            return
        }
        guard let server = try Self.server() else { return }
        let project = try Self.project("remote-fingerprint")
        let remote = ["--remote", server.baseURL.absoluteString]
        let other = try Self.run(project, cache: "cache-a", flags: remote, environment: ["SQUEEZE_KERNELS": "baseline"])
        try #require(other.status == 0, "\(other)")

        let plan = try Self.plan(project, cache: "cache-b", flags: remote)
        #expect(plan["base"]?.status == "remote" && plan["data"]?.status == "remote" && plan["count"]?.status == "remote", "\(plan)")
        let teacher = try #require(plan["teacher"])
        #expect(teacher.status == "run")
        #expect(teacher.reason.contains("remote entry for another backend fingerprint (cpu/"), "\(teacher.reason)")
        #expect(teacher.reason.contains("/baseline/") && teacher.reason.hasSuffix("; recomputing"), "\(teacher.reason)")

        let run = try Self.run(project, cache: "cache-b", flags: remote)
        try #require(run.status == 0, "\(run)")
        let record = try project.record(of: run)
        #expect(record.stage("teacher")?.status == "ran", "\(run)")
        #expect(record.stage("teacher")?.reason?.contains("remote entry for another backend fingerprint") == true, "\(run)")
        #expect(record.stage("teacher")?.key != (try project.record(of: other)).stage("teacher")?.key)
        #expect(record.stage("data")?.cache == "remote")
        #expect(Self.runCount(project) == 1)
        // Both fingerprints are on the server now; each machine finds its own.
        let again = try Self.plan(project, cache: "cache-c", flags: remote)
        #expect(again.values.allSatisfy { $0.status == "remote" }, "\(again)")
    }
}

/// Flips the first byte of a file in place (same size, other content).
func storeTestFlipFirstByte(_ path: String) {
    guard var bytes = FileManager.default.contents(atPath: path), !bytes.isEmpty else { return }
    bytes[0] ^= 0xff
    FileManager.default.createFile(atPath: path, contents: bytes)
}
