import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `squeeze run --executor slurm` against a real one-node Slurm cluster
/// (`SlurmCluster`): each stage is one batch job running `squeeze
/// stage-exec` on the node, against the project's cache. Serialized: the
/// tests share the cluster and look at its queue.
@Suite(.serialized, .enabled(if: SlurmCluster.testsEnabled, "Slurm (slurmctld, slurmd, slurm-client, munge) is not installed"))
struct SlurmExecutorTests {
    /// The parts of a stage record the Slurm executor adds.
    struct StageJSON: Decodable {
        struct Job: Decodable {
            var id: String
            var cluster: String?
            var node: String?
            var state: String?
            var queueWaitSeconds: Double?
            var attempts: Int
            var history: [String]
            var adopted: Bool
        }

        var id: String
        var status: String
        var reason: String?
        var cache: String?
        var executor: String?
        var job: Job?
        var outputs: [String: ArtifactJSON]
    }

    struct RecordJSON: Decodable {
        var status: String
        var stages: [StageJSON]
        func stage(_ id: String) -> StageJSON? { stages.first { $0.id == id } }
    }

    /// The site file of the tests: quick polling, no backoff.
    static let site = """
        slurm:
          time: 10m
          poll: { min: 0.1s, max: 1s }
          retries: { count: 0, backoff: 0s }

        """

    let cluster: SlurmCluster

    init() throws {
        cluster = try SlurmCluster.shared()
        // A test that failed half-way may have left jobs behind; they must not
        // hold the node's cores or show up in the next test's queue.
        for job in try cluster.queuedJobs() where job.name.hasPrefix("sq-") {
            try cluster.command("scancel", [job.id])
        }
        let deadline = Date().addingTimeInterval(30)
        while try cluster.queuedJobs().contains(where: { $0.name.hasPrefix("sq-") }), Date() < deadline { usleep(200_000) }
    }

    private func project(_ name: String, recipe: String, site: String = SlurmExecutorTests.site) throws -> Project {
        let project = try Project("slurm-\(name)")
        try project.write("recipe/recipe.yaml", recipe)
        try project.write("recipe/squeeze-site.yaml", site)
        return project
    }

    private func slurmRun(_ project: Project, _ flags: [String] = [], timeout: Double = 240) throws -> SqueezeCLI.Result {
        try project.run("recipe/recipe.yaml", ["--executor", "slurm"] + flags, environment: cluster.environment, timeout: timeout)
    }

    private func slurmStart(_ project: Project, cache: String? = nil, runs: String? = nil) throws -> BackgroundSqueeze {
        try SqueezeCLI.start(
            ["run", "recipe/recipe.yaml", "--executor", "slurm"] + project.storage(cache: cache, runs: runs),
            in: project.root, environment: cluster.environment)
    }

    private func record(_ project: Project, _ result: SqueezeCLI.Result, runs: String? = nil) throws -> RecordJSON {
        let id = try #require(result.runID, "no run id: \(result)")
        let shown = try project.squeeze(["runs", "show", id, "--json"] + project.storage(runs: runs))
        try #require(shown.status == 0, "\(shown)")
        return try JSONDecoder().decode(RecordJSON.self, from: Data(shown.stdout.utf8))
    }

    /// Our jobs still in the queue (every job of the tests is named `sq-…`).
    private func ourJobs() throws -> [(id: String, name: String, state: String)] {
        try cluster.queuedJobs().filter { $0.name.hasPrefix("sq-") }
    }

    /// Waits until a job whose name starts with `prefix` is RUNNING; its id.
    private func waitForRunningJob(_ prefix: String, timeout: Double = 60) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let job = try ourJobs().first(where: { $0.name.hasPrefix(prefix) && $0.state == "RUNNING" }) { return job.id }
            usleep(100_000)
        }
        throw SlurmCluster.ClusterError(description: "no running job `\(prefix)*` within \(timeout) s: \(try cluster.queuedJobs())")
    }

    private func waitForEmptyQueue(timeout: Double = 30) throws -> [(id: String, name: String, state: String)] {
        let deadline = Date().addingTimeInterval(timeout)
        var left = try ourJobs()
        while !left.isEmpty, Date() < deadline {
            usleep(200_000)
            left = try ourJobs()
        }
        return left
    }

    private func lines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    // MARK: -

    /// Command stages and a tiny training stage give the same output digests
    /// under Slurm as in this process; each job's log reaches the run's logs.
    @Test func commandAndTrainingStagesMatchTheLocalExecutor() throws {
        let recipe = TinySentiment.recipe(name: "slurm-digests", stages: TinySentiment.teacherStage(length: "epochs: 1") + """

              words:
                uses: command
                with:
                  run: [sh, -c, 'printf "%s\\n" one two three > "$SQUEEZE_OUT/words.txt"; echo wrote the words']
                  outputs: [words.txt]
              count:
                uses: command
                with:
                  run: [sh, -c, 'wc -l < "$1/words.txt" > "$SQUEEZE_OUT/n.txt"', sh, "${words.out}"]
                  outputs: [n.txt]
            """)
        let project = try TinySentiment.makeProject("slurm-digests", recipe: recipe)
        try project.write("recipe/squeeze-site.yaml", Self.site)

        let local = try project.run(timeout: 300)
        try #require(local.status == 0, "\(local)")
        let slurmCache = project.path("slurm-cache")
        let slurm = try project.squeeze(
            ["run", "recipe/recipe.yaml", "--executor", "slurm"] + project.storage(cache: slurmCache),
            environment: cluster.environment, timeout: 400)
        try #require(slurm.status == 0, "\(slurm)")

        let localRecord = try record(project, local)
        let slurmRecord = try record(project, slurm)
        for id in ["base", "data", "teacher", "words", "count"] {
            let here = try #require(localRecord.stage(id)), there = try #require(slurmRecord.stage(id))
            #expect(here.executor == "local" && there.executor == "slurm", "\(id)")
            #expect(there.status == "ran", "\(id): \(there)")
            #expect(!here.outputs.isEmpty && here.outputs == there.outputs, "\(id): local \(here.outputs) slurm \(there.outputs)")
            let job = try #require(there.job, "\(id) has no job record")
            #expect(job.state == "COMPLETED" && job.attempts == 1 && !job.adopted, "\(id): \(job)")
            #expect(job.cluster == cluster.clusterName && job.node != nil && job.queueWaitSeconds != nil, "\(id): \(job)")
        }
        let log = project.read("runs/\(slurm.runID ?? "")/logs/words.log") ?? ""
        #expect(log.contains("== slurm job") && log.contains("wrote the words"), "\(log)")
        #expect(try ourJobs().isEmpty)

        // A second Slurm run is all cache hits: nothing is submitted.
        let again = try project.squeeze(
            ["run", "recipe/recipe.yaml", "--executor", "slurm"] + project.storage(cache: slurmCache),
            environment: cluster.environment, timeout: 120)
        #expect(again.status == 0, "\(again)")
        #expect(try record(project, again).stages.allSatisfy { $0.status == "cached" && $0.job == nil })
    }

    /// A stage that fails on the node fails the run (exit 1), its dependents
    /// are skipped, the job's final state is recorded, and it is not retried.
    @Test func aFailingStageFailsTheRunAndIsNotRetried() throws {
        let project = try project("failing", recipe: """
            version: 1
            name: slurm-failing
            stages:
              bad:
                uses: command
                retries: 3
                with:
                  run: [sh, -c, 'echo about to fail; exit 3']
              after:
                uses: command
                needs: bad
                with:
                  run: ["true"]
            """)
        let result = try slurmRun(project)
        #expect(result.status == 1, "\(result)")
        let record = try record(project, result)
        let bad = try #require(record.stage("bad"))
        #expect(bad.status == "failed")
        #expect(bad.reason?.contains("command exited with status 3") == true, "\(bad)")
        #expect(bad.job?.state == "FAILED" && bad.job?.attempts == 1, "retries are for infrastructure failures only: \(String(describing: bad.job))")
        #expect(record.stage("after")?.status == "skipped")
        #expect(project.read("runs/\(result.runID ?? "")/logs/bad.log")?.contains("about to fail") == true)
    }

    /// A job cancelled by someone else while it runs is reported by its
    /// state and resubmitted per `retries:`; without retries it fails, named.
    @Test func aJobCancelledWhileRunningIsRetried() throws {
        let project = try project("scancel", recipe: "")
        let marker = project.path("started-once")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: slurm-scancel
            stages:
              slow:
                uses: command
                retries: 1
                with:
                  shell: true
                  outputs: [done.txt]
                  run: |
                    if [ -e \(marker) ]; then echo second > "$SQUEEZE_OUT/done.txt"; else touch \(marker); sleep 120; fi
            """)
        let driver = try slurmStart(project)
        let first = try waitForRunningJob("sq-slow-")
        while !FileManager.default.fileExists(atPath: marker) { usleep(50_000) }
        try cluster.command("scancel", [first])
        let result = driver.wait(timeout: 180)
        #expect(result.status == 0, "\(result)")
        let slow = try #require(try record(project, result).stage("slow"))
        #expect(slow.status == "ran")
        let job = try #require(slow.job)
        #expect(job.attempts == 2 && job.history.first == "\(first):CANCELLED" && job.state == "COMPLETED", "\(job)")
        #expect(result.stderr.contains("CANCELLED") && result.stderr.contains("resubmitting"), "\(result)")

        // Without retries the cancellation fails the stage, by name.
        try FileManager.default.removeItem(atPath: marker)
        try project.write("recipe/recipe.yaml", (project.read("recipe/recipe.yaml") ?? "")
            .replacingOccurrences(of: "retries: 1", with: "retries: 0")
            .replacingOccurrences(of: "second", with: "third"))
        let again = try slurmStart(project)
        let second = try waitForRunningJob("sq-slow-")
        while !FileManager.default.fileExists(atPath: marker) { usleep(50_000) }
        try cluster.command("scancel", [second])
        let failed = again.wait(timeout: 120)
        #expect(failed.status == 1, "\(failed)")
        let reason = try record(project, failed).stage("slow")?.reason ?? ""
        #expect(reason.contains("slurm job \(second) ended CANCELLED") && reason.contains("retries:"), "\(reason)")
    }

    /// A training job cancelled after it wrote a checkpoint is resubmitted per
    /// `retries:` and the new job resumes on the node from that checkpoint
    /// (kept in the shared cache's resumable area); the model is bit-identical
    /// to an uninterrupted local run's.
    @Test func aCancelledTrainingJobResumesFromItsCheckpoint() throws {
        let recipe = TinySentiment.recipe(name: "slurm-resume", stages: """
              teacher:
                uses: train/finetune
                retries: 1
                with:
                  model: ${base.model}
                  data: ${data.dataset}
                  steps: 12
                  batch_size: 8
                  lr: 3.0e-3
                  max_seq_len: 16
                  warmup_ratio: 0.1
                  checkpoint_every: 1
            """)
        let project = try TinySentiment.makeProject("slurm-resume", recipe: recipe)
        try project.write("recipe/squeeze-site.yaml", Self.site)
        let local = try project.run(timeout: 300)
        try #require(local.status == 0, "\(local)")
        let expected = try #require(try record(project, local).stage("teacher"))

        let slurmCache = project.path("slurm-cache")
        var environment = cluster.environment
        environment["SQUEEZE_TEST_PAUSE_AFTER_CHECKPOINT"] = "teacher:train:4"
        let driver = try SqueezeCLI.start(
            ["run", "recipe/recipe.yaml", "--executor", "slurm"] + project.storage(cache: slurmCache),
            in: project.root, environment: environment)
        let first = try waitForRunningJob("sq-teacher-", timeout: 120)
        let resumable = slurmCache + "/resumable"
        let deadline = Date().addingTimeInterval(180)
        func checkpointWritten() -> Bool {
            let areas = (try? FileManager.default.contentsOfDirectory(atPath: resumable)) ?? []
            return areas.contains { area in
                ((try? FileManager.default.contentsOfDirectory(atPath: "\(resumable)/\(area)/train")) ?? [])
                    .contains("checkpoint-0000000004")
            }
        }
        while !checkpointWritten(), Date() < deadline, driver.isRunning { usleep(50_000) }
        try #require(checkpointWritten(), "the job never wrote its checkpoint at step 4")
        try cluster.command("scancel", [first])
        let result = driver.wait(timeout: 300)
        try #require(result.status == 0, "\(result)")

        let teacher = try #require(try record(project, result).stage("teacher"))
        let job = try #require(teacher.job)
        #expect(job.attempts == 2 && job.history.first == "\(first):CANCELLED" && job.state == "COMPLETED", "\(job)")
        #expect(!expected.outputs.isEmpty && teacher.outputs == expected.outputs, "resumed \(teacher.outputs) uninterrupted \(expected.outputs)")
        let log = project.read("runs/\(result.runID ?? "")/logs/teacher.log") ?? ""
        #expect(log.contains("resumed from the checkpoint at step 4"), "\(log)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: resumable)) ?? []).isEmpty, "the area is gone once the entry exists")
    }

    /// A job that outlives its `resources.time` is stopped by Slurm and
    /// reported as TIMEOUT, by name (Slurm's limits are whole minutes, so
    /// this test takes one to two).
    @Test func aJobOverItsTimeLimitIsReportedAsTimeout() throws {
        let project = try project("timeout", recipe: """
            version: 1
            name: slurm-timeout
            stages:
              endless:
                uses: command
                retries: 0
                resources: {time: 1m}
                with:
                  run: [sleep, "600"]
            """)
        let result = try slurmRun(project, timeout: 300)
        #expect(result.status == 1, "\(result)")
        let endless = try #require(try record(project, result).stage("endless"))
        #expect(endless.status == "failed")
        #expect(endless.job?.state == "TIMEOUT", "\(String(describing: endless.job))")
        #expect(endless.reason?.contains("TIMEOUT") == true, "\(String(describing: endless.reason))")
        #expect(try waitForEmptyQueue().isEmpty)
    }

    /// Ctrl-C on the driver cancels every job it submitted: none of ours is
    /// left in the queue, and the run is recorded as interrupted.
    @Test func interruptingTheDriverCancelsItsJobs() throws {
        let project = try project("interrupt", recipe: """
            version: 1
            name: slurm-interrupt
            stages:
              one:
                uses: command
                with:
                  run: [sleep, "120"]
              two:
                uses: command
                with:
                  run: [sleep, "121"]
            """)
        let driver = try slurmStart(project)
        _ = try waitForRunningJob("sq-one-")
        let deadline = Date().addingTimeInterval(30)
        while try ourJobs().count < 2, Date() < deadline { usleep(100_000) }
        #expect(try ourJobs().count == 2)
        driver.send(SIGINT)
        let result = driver.wait(timeout: 60)
        #expect(result.status == 130, "\(result)")
        let left = try waitForEmptyQueue(timeout: 15)
        #expect(left.isEmpty, "jobs left in squeue: \(left)")
        let record = try record(project, result)
        #expect(record.status == "interrupted")
        #expect(record.stages.allSatisfy { $0.status == "cancelled" }, "\(record.stages.map { ($0.id, $0.status) })")
    }

    /// A driver killed (SIGKILL) while its job runs leaves the job running;
    /// the rerun adopts it instead of submitting again, and the stage is
    /// computed once (counted by a line appended outside the cache).
    @Test func aRerunAfterTheDriverWasKilledAdoptsTheJob() throws {
        let project = try project("adopt", recipe: "")
        let counter = project.path("executions")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: slurm-adopt
            stages:
              once:
                uses: command
                with:
                  shell: true
                  outputs: [done.txt]
                  run: |
                    echo ran >> \(counter)
                    sleep 4
                    echo done > "$SQUEEZE_OUT/done.txt"
            """)
        let killed = try slurmStart(project)
        let job = try waitForRunningJob("sq-once-")
        killed.killHard()
        _ = killed.wait(timeout: 10)
        #expect(try ourJobs().contains { $0.id == job }, "the job must outlive its driver")

        let rerun = try slurmRun(project, timeout: 120)
        #expect(rerun.status == 0, "\(rerun)")
        let once = try #require(try record(project, rerun).stage("once"))
        #expect(once.job?.id == job && once.job?.adopted == true && once.job?.attempts == 0, "\(String(describing: once.job))")
        #expect(lines(counter) == 1, "the stage ran \(lines(counter)) times")

        // After the job finished, a driver killed before it saw the end leaves a cache hit.
        let third = try slurmRun(project, timeout: 60)
        let thirdStatus = try record(project, third).stage("once")?.status
        #expect(third.status == 0 && thirdStatus == "cached", "\(third)")
        #expect(lines(counter) == 1)
    }

    /// Two drivers on one shared cache: each stage is computed once.
    @Test func twoDriversOnOneCacheComputeEachStageOnce() throws {
        let project = try project("two-drivers", recipe: "")
        let counters = (1...3).map { project.path("count-\($0)") }
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: slurm-two-drivers
            stages:
              a:
                uses: command
                with:
                  shell: true
                  outputs: [a.txt]
                  run: 'echo a >> \(counters[0]); sleep 2; echo a > "$SQUEEZE_OUT/a.txt"'
              b:
                uses: command
                with:
                  shell: true
                  outputs: [b.txt]
                  run: 'echo b >> \(counters[1]); sleep 2; echo b > "$SQUEEZE_OUT/b.txt"'
              c:
                uses: command
                with:
                  outputs: [c.txt]
                  run: [sh, -c, 'echo c >> \(counters[2]); cat "$1/a.txt" "$2/b.txt" > "$SQUEEZE_OUT/c.txt"', sh, "${a.out}", "${b.out}"]
            """)
        let first = try slurmStart(project, runs: project.path("runs-1"))
        let second = try slurmStart(project, runs: project.path("runs-2"))
        let one = first.wait(timeout: 180), two = second.wait(timeout: 180)
        #expect(one.status == 0, "\(one)")
        #expect(two.status == 0, "\(two)")
        for counter in counters {
            #expect(lines(counter) == 1, "\(counter): computed \(lines(counter)) times")
        }
    }

    /// `resources:` reach Slurm: the job asks for the stage's memory and time.
    @Test func resourcesAreRequestedFromSlurm() throws {
        let project = try project("resources", recipe: """
            version: 1
            name: slurm-resources
            stages:
              sized:
                uses: command
                resources: { cores: 1, memory: 300M, time: 7m }
                with:
                  run: [sleep, "60"]
            """)
        let driver = try slurmStart(project)
        let id = try waitForRunningJob("sq-sized-")
        let job = try cluster.job(id)
        #expect(job["MinMemoryNode"] == "300M", "\(job)")
        #expect(job["TimeLimit"] == "00:07:00", "\(job)")
        #expect(job["NumCPUs"] == "1", "\(job)")
        driver.send(SIGINT)
        let result = driver.wait(timeout: 60)
        #expect(result.status == 130, "\(result)")
        #expect(try waitForEmptyQueue().isEmpty)
    }
}
