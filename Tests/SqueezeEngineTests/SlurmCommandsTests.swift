import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeYAML
import Testing

/// The Slurm executor's pure parts: the sbatch argument vector, the job
/// script's quoting, what scontrol prints, and the site file.
@Suite struct SlurmCommandsTests {
    @Test func resourcesMapToSbatchFlags() {
        let resources = Resources(cores: 4, memoryBytes: 8 * 1_073_741_824, gpus: 2, timeLimitSeconds: 90 * 60, partition: "gpu")
        let settings = SlurmSettings(
            partition: "cpu", account: "compression", qos: "normal", timeSeconds: 3600, memoryBytes: 1_073_741_824,
            extraFlags: ["--constraint=zen4"])
        let arguments = SlurmCommands.sbatchArguments(
            resources: resources, settings: settings, jobName: "sq-teacher-0123456789ab", outputPath: "/c/jobs/logs/x.log",
            workingDirectory: "/home/me/project", scriptPath: "/c/jobs/specs/x.sh")
        #expect(arguments == [
            "--parsable", "--job-name=sq-teacher-0123456789ab", "--output=/c/jobs/logs/x.log", "--open-mode=append",
            "--chdir=/home/me/project", "--export=ALL", "--nodes=1", "--ntasks=1", "--cpus-per-task=4", "--mem=8192M",
            "--gres=gpu:2", "--time=0-01:30:00", "--partition=gpu", "--account=compression", "--qos=normal",
            "--constraint=zen4", "/c/jobs/specs/x.sh",
        ])
    }

    @Test func siteDefaultsApplyWhenTheStageAsksNothing() {
        let settings = SlurmSettings(partition: "cpu", timeSeconds: 2 * 86400 + 5, memoryBytes: 1_500_000)
        let arguments = SlurmCommands.sbatchArguments(
            resources: Resources(allCores: true), settings: settings, jobName: "j", outputPath: "o",
            workingDirectory: "w", scriptPath: "s")
        #expect(arguments.contains("--exclusive") && !arguments.contains { $0.hasPrefix("--cpus-per-task") })
        #expect(arguments.contains("--mem=2M"), "memory is rounded up to whole MiB: \(arguments)")
        #expect(arguments.contains("--time=2-00:00:05") && arguments.contains("--partition=cpu"))
        #expect(!arguments.contains { $0.hasPrefix("--gres") || $0.hasPrefix("--account") || $0.hasPrefix("--qos") })
    }

    /// A partition name with shell syntax stays one argument; paths in the
    /// job script are single shell words.
    @Test func parametersNeverReachAShellUnquoted() {
        let arguments = SlurmCommands.sbatchArguments(
            resources: Resources(partition: "a b; rm -rf /"), settings: SlurmSettings(), jobName: "j", outputPath: "o",
            workingDirectory: "w", scriptPath: "s")
        #expect(arguments.contains("--partition=a b; rm -rf /"))
        let script = SlurmCommands.jobScript(squeeze: "/opt/my squeeze/squeeze", specPath: "/cache/it's.json")
        #expect(script.contains("exec '/opt/my squeeze/squeeze' stage-exec '/cache/it'\\''s.json'"), "\(script)")
        #expect(SlurmCommands.jobName(stageID: "int8[observer=mse,sparsity=0.6]", key: String(repeating: "ab", count: 32))
            == "sq-int8_observer_mse_sparsity_0.6_-abababababab")
    }

    @Test func scontrolOutputIsParsed() {
        let line = "JobId=42 JobName=sq-x UserId=root(0) JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 "
            + "SubmitTime=2026-12-07T14:04:45 StartTime=2026-12-07T14:04:48 NodeList=vm BatchHost=vm "
            + "Command=/tmp/a b.sh WorkDir=/tmp Power="
        let status = SlurmJobStatus(fields: SlurmCommands.parseJobFields(line), id: "42")
        #expect(status.state == "TIMEOUT" && status.isTerminal)
        #expect(SlurmJobStatus.infrastructureStates.contains(status.state))
        #expect(status.exitCode == 0 && status.exitSignal == 15 && status.node == "vm" && status.reason == "TimeLimit")
        #expect(status.queueWaitSeconds == 3)
        #expect(SlurmCommands.parseJobFields(line)["Command"] == "/tmp/a b.sh")
        #expect(SlurmCommands.parseSubmission("123\n")?.id == "123")
        #expect(SlurmCommands.parseSubmission("77;cluster2")?.cluster == "cluster2")
        #expect(SlurmCommands.parseSubmission("sbatch: error: invalid partition") == nil)
        #expect(!SlurmJobStatus.infrastructureStates.contains("FAILED"), "a stage's own failure is never retried")
    }

    @Test func siteFileIsRead() throws {
        let site = try SiteConfiguration.load(text: """
            slurm:
              partition: cpu
              account: lab
              qos: high
              time: 2h
              memory: 16G
              extra_sbatch_flags: [--constraint=zen4, --exclusive]
              retries: { count: 2, backoff: 30s }
              poll: { min: 1s, max: 1m }
              squeeze: /shared/bin/squeeze
            cache:
              directory: shared-cache
              remote: https://ci:tok3n@cache.example.org/squeeze
            """, file: "/site/squeeze-site.yaml")
        #expect(site.slurm == SlurmSettings(
            partition: "cpu", account: "lab", qos: "high", timeSeconds: 7200, memoryBytes: 16 * 1_073_741_824,
            extraFlags: ["--constraint=zen4", "--exclusive"], retries: 2, backoffSeconds: 30, pollMinimumSeconds: 1,
            pollMaximumSeconds: 60, squeezeExecutable: "/shared/bin/squeeze"))
        #expect(site.cacheDirectory == "/site/shared-cache", "relative to the site file")
        #expect(site.remoteCache == "https://ci:tok3n@cache.example.org/squeeze")
    }

    @Test func siteFileErrorsHavePositions() {
        let problems: [Diagnostic]
        do {
            _ = try SiteConfiguration.load(text: """
                slurm:
                  partiton: cpu
                  memory: lots
                  extra_sbatch_flags: [constraint]
                  retries: { count: -1 }
                  poll: { min: 10s, max: 1s }
                cache:
                  remote_url: x
                  remote: ftp://user:s3cret@host/x
                """, file: "site.yaml")
            Issue.record("a bad site file loaded")
            return
        } catch {
            problems = error.items
        }
        let shown = problems.map { "\($0.location?.line ?? 0):\($0.location?.column ?? 0) \($0.message)" }
        #expect(shown.contains("2:3 unknown key `partiton` in `slurm`"), "\(shown)")
        #expect(problems.first { $0.message.contains("partiton") }?.hint?.contains("partition") == true)
        #expect(shown.contains { $0.hasPrefix("3:11 `slurm.memory` must be an amount") }, "\(shown)")
        #expect(shown.contains { $0.hasPrefix("4:24 `constraint` is not an sbatch flag") }, "\(shown)")
        #expect(shown.contains { $0.hasPrefix("5:21 `retries.count` must be a whole number") }, "\(shown)")
        #expect(shown.contains { $0.hasPrefix("6:9 `poll.min` is longer than `poll.max`") }, "\(shown)")
        #expect(shown.contains("8:3 unknown key `remote_url` in `cache`"), "\(shown)")
        #expect(shown.contains { $0.hasPrefix("9:11 `cache.remote` must be an http:// or https:// URL") }, "\(shown)")
        #expect(!shown.joined().contains("s3cret"), "the URL may hold a password: never echoed")
        #expect(problems.allSatisfy { $0.location?.file == "site.yaml" })
    }
}
