import Foundation
import SqueezeModels
import SqueezeServersTestSupport
import SqueezeSupport
import Testing
import ZIPFoundation

/// `source: {url, sha256, files}` of `data/text-classification`, `data/text`
/// and `model/import`, through the CLI against a real nginx on loopback:
/// one download per pin, the pin (not the URL) in the key, a wrong pin, a
/// resumed download, the server gone, archives unpacked or refused, and the
/// shipped SST-2 recipes' fallback to GLUE's zip.
@Suite struct URLSourceTests {
    static func server(limitRate: Int? = nil) throws -> NginxServer? {
        guard ExternalRequirement.check(NginxServer.unavailableReason, record: { Issue.record(Comment(rawValue: $0)) }) else { return nil }
        return try NginxServer(limitRate: limitRate)
    }

    /// The bytes of a zip holding `members` (path, content), deflated unless `stored`.
    static func zip(_ members: [(String, Data)], stored: Bool = false) throws -> Data {
        let path = NSTemporaryDirectory() + "url-source-\(UUID().uuidString).zip"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .create)
        for (name, data) in members {
            try archive.addEntry(
                with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: stored ? .none : .deflate
            ) { position, size in data.subdata(in: Int(position)..<Int(position) + size) }
        }
        return try Data(contentsOf: URL(fileURLWithPath: path))
    }

    /// A labelled TSV in SST-2's layout: `sentence<TAB>label`.
    static func tsv(rows: Int, offset: Int = 0) -> Data {
        let words = ["good", "bad", "fine", "dull", "great", "awful"]
        let lines = (0..<rows).map { row in "\(words[(row + offset) % words.count]) film number \(row + offset) \t\((row + offset) % 2)" }
        return Data((["sentence\tlabel"] + lines).map { $0 + "\n" }.joined().utf8)
    }

    static func sha(_ data: Data) -> String { Hashing.sha256(data).hex }

    /// Requests for `path` in the server's access log.
    static func requests(_ server: NginxServer, for path: String) -> [String] {
        server.accessLines().filter { $0.contains("GET /\(path) ") }
    }

    /// `data/text-classification` stages reading a download; `files` is the
    /// flow mapping of members, `extra` more `with:` lines (6 spaces in).
    static func classificationRecipe(_ stages: [(id: String, url: String, sha256: String, files: String, extra: String)]) -> String {
        var lines = ["version: 1", "name: url-source", "seed: 3", "stages:"]
        for stage in stages {
            lines += [
                "  \(stage.id):", "    uses: data/text-classification", "    with:", "      source:",
                "        url: \(stage.url)", "        sha256: \(stage.sha256)", "        files: \(stage.files)",
            ]
            if !stage.extra.isEmpty { lines.append("      " + stage.extra) }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The files of the download area of `project`'s cache.
    static func downloadArea(_ project: Project) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: project.path("cache/downloads"))) ?? []).sorted()
    }

    @Test func aPinIsDownloadedOnceForEveryStageAndRunAndMirrorsAreHits() throws {
        guard let server = try Self.server() else { return }
        let archive = try Self.zip([("d/train.tsv", Self.tsv(rows: 20)), ("d/test.tsv", Self.tsv(rows: 6, offset: 1))])
        try server.place(archive, at: "glue/data.zip")
        try server.place(archive, at: "mirror/copy.zip")
        let pin = Self.sha(archive)
        let project = try Project("url-once")
        func recipe(_ url: String) -> String {
            Self.classificationRecipe([
                ("a", url, pin, "{train: d/train.tsv, test: d/test.tsv}", ""),
                ("b", url, pin, "{train: d/train.tsv}", "split_dev_from_train: 0.25"),
            ])
        }
        try project.write("recipe/recipe.yaml", recipe(server.baseURL.absoluteString + "/glue/data.zip"))
        let first = try project.run("recipe/recipe.yaml", ["--jobs", "2"])
        #expect(first.status == 0, "\(first)")
        #expect(Self.requests(server, for: "glue/data.zip").count == 1, "\(server.accessLines())")
        let a = try ModelStagesTests.metrics(project, runID: first.runID, stage: "a")
        #expect(a["train_rows"] as? Int == 20 && a["test_rows"] as? Int == 6, "\(a)")
        let b = try ModelStagesTests.metrics(project, runID: first.runID, stage: "b")
        #expect(b["train_rows"] as? Int == 15 && b["dev_rows"] as? Int == 5, "\(b)")
        #expect(Self.downloadArea(project) == [pin], "only the verified file stays: \(Self.downloadArea(project))")

        let forced = try project.run("recipe/recipe.yaml", ["--force", "a", "--force", "b"])
        #expect(forced.status == 0, "\(forced)")
        #expect(try project.record(of: forced).stage("a")?.status == "ran")
        #expect(Self.requests(server, for: "glue/data.zip").count == 1, "a rerun reads the kept download")

        // Another URL serving the same bytes: the key holds the pin, not the URL.
        try project.write("recipe/recipe.yaml", recipe(server.baseURL.absoluteString + "/mirror/copy.zip"))
        let mirrored = try project.run()
        #expect(mirrored.status == 0, "\(mirrored)")
        let record = try project.record(of: mirrored)
        #expect(record.stage("a")?.cache == "hit" && record.stage("b")?.cache == "hit", "\(mirrored)")
        #expect(Self.requests(server, for: "mirror/copy.zip").isEmpty)
    }

    @Test func aWrongPinFailsNamingBothDigestsAndKeepsNothing() throws {
        guard let server = try Self.server() else { return }
        let archive = try Self.zip([("d/train.tsv", Self.tsv(rows: 10))])
        try server.place(archive, at: "data.zip")
        let wrong = Self.sha(Data("something else".utf8))
        let project = try Project("url-wrong-pin")
        let url = server.baseURL.absoluteString + "/data.zip"
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([("a", url, wrong, "{train: d/train.tsv}", "")]))
        let result = try project.run()
        #expect(result.status == 1 && result.exitedNormally, "\(result)")
        let reason = try #require(try project.record(of: result).stage("a")?.reason)
        #expect(reason.contains(url) && reason.contains(wrong) && reason.contains(Self.sha(archive)), "\(reason)")
        #expect(reason.contains("recipe.yaml:") && reason.contains("`source`:"), "reported at `source`: \(reason)")
        #expect(try project.cacheEntries().isEmpty)
        #expect(Self.downloadArea(project).isEmpty, "\(Self.downloadArea(project))")
    }

    @Test func aPinThatIsNotSixtyFourHexDigitsOrAURLThatIsNotHTTPIsARecipeError() throws {
        let project = try Project("url-validate")
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([
            ("a", "ftp://example.org/data.zip", "abc123", "{train: d/train.tsv}", ""),
        ]))
        let result = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:9:") && result.stderr.contains("not an http:// or https:// URL"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:10:") && result.stderr.contains("64 hex digits"), "\(result)")

        try project.write("recipe/recipe.yaml", Self.classificationRecipe([
            ("a", "https://user:secret@example.org/data.zip", String(repeating: "a", count: 64), "{train: d/train.tsv}", ""),
        ]))
        let credentials = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(credentials.status == 2 && credentials.stderr.contains("~/.netrc"), "\(credentials)")
    }

    @Test func theServerGoneIsAStageFailureNamingTheURL() throws {
        guard let server = try Self.server() else { return }
        let url = server.baseURL.absoluteString + "/data.zip"
        server.stop()
        let project = try Project("url-gone")
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([
            ("a", url, String(repeating: "0", count: 64), "{train: d/train.tsv}", ""),
        ]))
        let result = try project.run()
        #expect(result.status == 1 && result.exitedNormally, "\(result)")
        let reason = try #require(try project.record(of: result).stage("a")?.reason)
        #expect(reason.contains("GET \(url) failed"), "\(reason)")
        #expect(try project.cacheEntries().isEmpty)
    }

    /// Every file under `directory` whose bytes contain `secret`.
    static func files(under directory: String, containing secret: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return [] }
        var found: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let path = directory + "/" + relative
            if let data = FileManager.default.contents(atPath: path), data.range(of: Data(secret.utf8)) != nil { found.append(relative) }
        }
        return found
    }

    @Test func credentialsComeFromNetrcOrTheEnvironmentAndNeverReachRecordsOrLogs() throws {
        guard ExternalRequirement.check(NginxServer.unavailableReason, record: { Issue.record(Comment(rawValue: $0)) }) else { return }
        let secret = "s3cret-\(UUID().uuidString.prefix(8))"
        let server = try NginxServer(authentication: (user: "alice", password: secret))
        let archive = try Self.zip([("d/train.tsv", Self.tsv(rows: 6))])
        try server.place(archive, at: "private/data.zip")
        let project = try Project("url-credentials")
        let plain = server.baseURL.absoluteString + "/private/data.zip"
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([("a", "${env.DATA_URL}", Self.sha(archive), "{train: d/train.tsv}", "")]))

        let refused = try project.run(environment: ["DATA_URL": plain, "NETRC": project.path("no-netrc")])
        #expect(refused.status == 1, "\(refused)")
        #expect(try project.record(of: refused).stage("a")?.reason?.contains("HTTP 401: credentials are missing or refused") == true)

        try project.write("netrc", "machine 127.0.0.1 login alice password \(secret)\n")
        let withNetrc = try project.run(environment: ["DATA_URL": plain, "NETRC": project.path("netrc")])
        #expect(withNetrc.status == 0, "\(withNetrc)")

        // Credentials in the URL itself (from the environment, never the recipe) are used and shown redacted.
        let inURL = plain.replacingOccurrences(of: "http://", with: "http://alice:\(secret)@")
        let forced = try project.run("recipe/recipe.yaml", ["--force", "a"], environment: ["DATA_URL": inURL, "NETRC": project.path("no-netrc")])
        #expect(forced.status == 0, "\(forced)")
        try FileManager.default.removeItem(atPath: project.path("cache/downloads"))
        let again = try project.run("recipe/recipe.yaml", ["--force", "a"], environment: ["DATA_URL": inURL, "NETRC": project.path("no-netrc")])
        #expect(again.status == 0, "\(again)")
        let runID = try #require(again.runID)
        let log = try #require(project.read("runs/\(runID)/logs/a.log"))
        #expect(log.contains("downloading \(plain)"), "\(log)")
        for result in [refused, withNetrc, forced, again] {
            #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret))
        }
        #expect(Self.files(under: project.runsDirectory, containing: secret).isEmpty)
        #expect(Self.files(under: project.cacheDirectory, containing: secret).isEmpty)
    }

    @Test func aKilledDownloadResumesWithARangedRequestForTheRest() throws {
        guard let server = try Self.server(limitRate: 3_000_000) else { return }
        // Incompressible padding, stored: the zip is larger than one 8 MiB chunk.
        var state: UInt64 = 9
        let padding = Data((0..<(12 << 20)).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        })
        let archive = try Self.zip([("d/train.tsv", Self.tsv(rows: 10)), ("d/padding.bin", padding)], stored: true)
        try server.place(archive, at: "big.zip")
        let pin = Self.sha(archive)
        let project = try Project("url-resume")
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([
            ("a", server.baseURL.absoluteString + "/big.zip", pin, "{train: d/train.tsv}", ""),
        ]))
        let partial = project.path("cache/downloads/\(pin).partial")
        let running = try SqueezeCLI.start(["run", "recipe/recipe.yaml"] + project.storage(), in: project.root)
        let deadline = Date().addingTimeInterval(60)
        var size: Int64 = 0
        while Date() < deadline, running.isRunning {
            size = ((try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? NSNumber)?.int64Value ?? 0
            if size >= 8 << 20 { break }
            usleep(20_000)
        }
        try #require(size == 8 << 20, "the first chunk did not arrive: \(size) bytes")
        running.killHard()
        _ = running.wait(timeout: 10)
        #expect(try project.cacheEntries().isEmpty)

        let resumed = try project.run()
        #expect(resumed.status == 0, "\(resumed)")
        let rest = archive.count - (8 << 20)
        let lines = Self.requests(server, for: "big.zip")
        #expect(lines.contains { $0.contains("\" 206 \(rest) ") }, "a 206 for the last \(rest) bytes: \(lines)")
        #expect(!lines.contains { $0.contains("\" 200 ") }, "never the whole file again: \(lines)")
        #expect(Self.downloadArea(project) == [pin])
        let metrics = try ModelStagesTests.metrics(project, runID: resumed.runID, stage: "a")
        #expect(metrics["train_rows"] as? Int == 10)
    }

    @Test func anArchiveMemberClimbingOutIsRefused() throws {
        guard let server = try Self.server() else { return }
        let escape = "url-source-evil-\(UUID().uuidString).tsv"
        let archive = try Self.zip([("d/train.tsv", Self.tsv(rows: 4)), ("../../\(escape)", Self.tsv(rows: 2))])
        try server.place(archive, at: "evil.zip")
        let project = try Project("url-evil")
        try project.write("recipe/recipe.yaml", Self.classificationRecipe([
            ("a", server.baseURL.absoluteString + "/evil.zip", Self.sha(archive), "{train: d/train.tsv}", ""),
        ]))
        let result = try project.run()
        #expect(result.status == 1 && result.exitedNormally, "\(result)")
        let reason = try #require(try project.record(of: result).stage("a")?.reason)
        #expect(reason.contains("../../\(escape)") && reason.contains("outside"), "\(reason)")
        #expect(!FileManager.default.fileExists(atPath: NSTemporaryDirectory() + escape))
        #expect(!FileManager.default.fileExists(atPath: (NSTemporaryDirectory() as NSString).deletingLastPathComponent + "/" + escape))
        #expect(try project.cacheEntries().isEmpty)
    }

    @Test func aTarGzFeedsDataTextLikeTheLocalFile() throws {
        guard let server = try Self.server() else { return }
        let project = try Project("url-tar")
        try project.write("recipe/train.txt", TextDataStageTests.train)
        try project.write("source/wiki/test.txt", TextDataStageTests.test)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-czf", project.path("wiki.tar.gz"), "wiki"]
        tar.currentDirectoryURL = project.url("source")
        try tar.run()
        tar.waitUntilExit()
        try #require(tar.terminationStatus == 0)
        let archive = try Data(contentsOf: project.url("wiki.tar.gz"))
        try server.place(archive, at: "wiki.tar.gz")

        try project.write("recipe/test.txt", TextDataStageTests.test)
        try project.write("recipe/recipe.yaml", TextDataStageTests.recipe("      test: [test.txt]"))
        let local = try project.run()
        #expect(local.status == 0, "\(local)")
        let localDataset = try #require(try project.record(of: local).stage("data")?.outputs["dataset"])

        try project.write("recipe/recipe.yaml", TextDataStageTests.recipe("""
                  source:
                    url: \(server.baseURL.absoluteString)/wiki.tar.gz
                    sha256: \(Self.sha(archive))
                    files: {test: [wiki/test.txt]}
            """))
        let downloaded = try project.run()
        #expect(downloaded.status == 0, "\(downloaded)")
        let record = try project.record(of: downloaded)
        #expect(record.stage("data")?.cache == "miss")
        #expect(record.stage("data")?.outputs["dataset"] == localDataset, "the same test stream from the archive")
        #expect(Self.requests(server, for: "wiki.tar.gz").count == 1)

        // A local file that is missing, with the download as its fallback: the download's key, a hit.
        try project.write("recipe/recipe.yaml", TextDataStageTests.recipe("""
                  test: [absent.txt]
                  source:
                    url: \(server.baseURL.absoluteString)/wiki.tar.gz
                    sha256: \(Self.sha(archive))
                    files: {test: [wiki/test.txt]}
            """))
        let fallback = try project.run()
        #expect(fallback.status == 0, "\(fallback)")
        #expect(try project.record(of: fallback).stage("data")?.cache == "hit", "\(fallback)")
    }

    @Test func aZippedCheckpointImports() throws {
        guard let server = try Self.server() else { return }
        let project = try Project("url-model")
        try ModelStagesTests.writeTinyModel(at: project.url("recipe/tiny"))
        var members: [(String, Data)] = []
        for name in ["config.json", "model.safetensors", "vocab.txt"] {
            members.append(("tiny-bert/\(name)", try Data(contentsOf: project.url("recipe/tiny/\(name)"))))
        }
        let archive = try Self.zip(members)
        try server.place(archive, at: "models/tiny.zip")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              local:
                uses: model/import
                with:
                  directory: tiny
              model:
                uses: model/import
                with:
                  source: {url: "\(server.baseURL.absoluteString)/models/tiny.zip", sha256: \(Self.sha(archive))}
            """)
        let result = try project.run()
        #expect(result.status == 0, "\(result)")
        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "model", output: "model")
        let artifact = try ModelArtifact(directory: directory)
        try artifact.verify()
        #expect(artifact.manifest.architecture == "bert")
        #expect(artifact.manifest.source == "sha256:\(Self.sha(archive))", "the pin, not the URL")
        let local = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "local", output: "model")
        #expect(FileManager.default.contents(atPath: directory + "/model.safetensors") == FileManager.default.contents(atPath: local + "/model.safetensors"))
        #expect(try artifact.tokenizer().encode("Good films") == [2, 5, 7, 8, 3])

        // The same bytes from another URL: a hit (the `source` string-or-download keys the pin).
        try server.place(archive, at: "mirror/tiny.zip")
        let recipe = try #require(project.read("recipe/recipe.yaml"))
        try project.write("recipe/recipe.yaml", recipe.replacingOccurrences(of: "/models/tiny.zip", with: "/mirror/tiny.zip"))
        let mirrored = try project.run()
        let mirroredCache = try project.record(of: mirrored).stage("model")?.cache
        #expect(mirrored.status == 0 && mirroredCache == "hit", "\(mirrored)")
    }

    // MARK: The shipped SST-2 recipes' fallback

    static let shippedRecipe = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("pipelines/sst2-data.yaml")
    static let gluePin = "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"

    /// A zip in GLUE's SST-2 layout: labelled train and dev, unlabelled test.
    static func glueZip() throws -> Data {
        let test = Data((["index\tsentence"] + (0..<4).map { "\($0)\tunlabelled sentence \($0)" }).map { $0 + "\n" }.joined().utf8)
        return try zip([("SST-2/train.tsv", tsv(rows: 50)), ("SST-2/dev.tsv", tsv(rows: 8, offset: 3)), ("SST-2/test.tsv", test)])
    }

    /// The shipped recipe, pinned to `pin`, at `recipe/pipelines/sst2-data.yaml`
    /// (its default data directory, `../../shared/data`, is then the project's).
    static func writeShippedRecipe(_ project: Project, pin: String) throws {
        let text = try String(contentsOf: shippedRecipe, encoding: .utf8)
        try #require(text.contains(gluePin))
        try project.write("recipe/pipelines/sst2-data.yaml", text.replacingOccurrences(of: gluePin, with: pin))
    }

    @Test func theShippedSST2RecipeFallsBackToGLUEsZipWithASeededDevSplit() throws {
        guard let server = try Self.server() else { return }
        let archive = try Self.glueZip()
        try server.place(archive, at: "glue/SST-2.zip")
        let environment: [String: String?] = ["SQUEEZE_DATA": nil, "SQUEEZE_GLUE_URL": server.baseURL.absoluteString + "/glue/SST-2.zip"]
        var datasets: [ArtifactJSON] = []
        for attempt in 0..<2 {
            let project = try Project("url-sst2-\(attempt)")
            try Self.writeShippedRecipe(project, pin: Self.sha(archive))
            let result = try project.run("recipe/pipelines/sst2-data.yaml", ["--only", "sst2"], environment: environment)
            #expect(result.status == 0, "\(result)")
            let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "sst2")
            #expect(metrics["train_rows"] as? Int == 45 && metrics["dev_rows"] as? Int == 5 && metrics["test_rows"] as? Int == 8, "\(metrics)")
            datasets.append(try #require(try project.record(of: result).stage("sst2")?.outputs["dataset"]))
        }
        #expect(datasets[0] == datasets[1], "the seeded dev split is the same in every fresh cache")
        #expect(Self.requests(server, for: "glue/SST-2.zip").count == 2)
    }

    @Test func withTheLocalFilesTheSST2KeyIsTheOneWithoutAFallback() throws {
        guard let server = try Self.server() else { return }
        let archive = try Self.glueZip()
        try server.place(archive, at: "glue/SST-2.zip")
        let project = try Project("url-sst2-local")
        try Self.writeShippedRecipe(project, pin: Self.sha(archive))
        try project.write("shared/data/sst2/train.tsv", String(decoding: Self.tsv(rows: 30), as: UTF8.self))
        try project.write("shared/data/sst2/dev.tsv", String(decoding: Self.tsv(rows: 5, offset: 2), as: UTF8.self))
        try project.write("shared/data/sst2/test.tsv", String(decoding: Self.tsv(rows: 5, offset: 4), as: UTF8.self))
        // The same recipe as before the fallback existed.
        let shipped = try #require(project.read("recipe/pipelines/sst2-data.yaml"))
        let withoutFallback = shipped.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed != "source:"
                && !["# Without those files", "url:", "sha256:", "files:", "split_dev_from_train:"].contains { trimmed.hasPrefix($0) }
        }.joined(separator: "\n")
        #expect(withoutFallback.contains("source: pip:") && !withoutFallback.contains("SST-2.zip"))
        try project.write("recipe/pipelines/plain.yaml", withoutFallback)
        let environment: [String: String?] = ["SQUEEZE_DATA": nil, "SQUEEZE_GLUE_URL": server.baseURL.absoluteString + "/glue/SST-2.zip"]
        func key(_ recipe: String) throws -> String? {
            let plan = try project.squeeze(["plan", recipe, "--json", "--only", "sst2"] + project.storage(), environment: environment)
            try #require(plan.status == 0, "\(plan)")
            let stages = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [[String: Any]])
            return stages.first { $0["id"] as? String == "sst2" }?["key"] as? String
        }
        let shippedKey = try #require(try key("recipe/pipelines/sst2-data.yaml"))
        #expect(shippedKey == (try key("recipe/pipelines/plain.yaml")))
        let result = try project.run("recipe/pipelines/sst2-data.yaml", ["--only", "sst2"], environment: environment)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "sst2")
        #expect(metrics["train_rows"] as? Int == 30 && metrics["dev_rows"] as? Int == 5, "\(metrics)")
        #expect(Self.requests(server, for: "glue/SST-2.zip").isEmpty, "local files: no download")
    }
}
