import Foundation
import SqueezeRecipe
import SqueezeSupport

/// The Slurm commands the executor calls, always with argument vectors (no
/// shell ever sees a parameter), and the parsing of what they print.
public enum SlurmCommands {
    /// The `sbatch` arguments (without the program name) that submit
    /// `scriptPath` for a stage asking for `resources`: the stage's own
    /// requests win over the site's defaults. Every flag is written
    /// `--name=value`, so no value can be read as another flag.
    public static func sbatchArguments(
        resources: Resources, settings: SlurmSettings, jobName: String, outputPath: String,
        workingDirectory: String, scriptPath: String
    ) -> [String] {
        var arguments = [
            "--parsable", "--job-name=\(jobName)", "--output=\(outputPath)", "--open-mode=append",
            "--chdir=\(workingDirectory)", "--export=ALL", "--nodes=1", "--ntasks=1",
        ]
        if resources.allCores {
            arguments.append("--exclusive")
        } else {
            arguments.append("--cpus-per-task=\(max(1, resources.cores ?? 1))")
        }
        if let bytes = resources.memoryBytes ?? settings.memoryBytes {
            arguments.append("--mem=\(memoryMebibytes(bytes))M")
        }
        if let gpus = resources.gpus, gpus > 0 {
            arguments.append("--gres=gpu:\(gpus)")
        }
        if let seconds = resources.timeLimitSeconds ?? settings.timeSeconds {
            arguments.append("--time=\(slurmDuration(seconds))")
        }
        if let partition = resources.partition ?? settings.partition { arguments.append("--partition=\(partition)") }
        if let account = settings.account { arguments.append("--account=\(account)") }
        if let qos = settings.qos { arguments.append("--qos=\(qos)") }
        arguments += settings.extraFlags
        arguments.append(scriptPath)
        return arguments
    }

    /// Bytes as whole mebibytes, rounded up (Slurm's `--mem` unit `M`).
    static func memoryMebibytes(_ bytes: Int) -> Int {
        max(1, (bytes + 1_048_575) / 1_048_576)
    }

    /// Seconds as Slurm's `D-HH:MM:SS`.
    static func slurmDuration(_ seconds: Int) -> String {
        let days = seconds / 86400, hours = seconds % 86400 / 3600, minutes = seconds % 3600 / 60
        return String(format: "%d-%02d:%02d:%02d", days, hours, minutes, seconds % 60)
    }

    /// The job script: runs `squeeze stage-exec SPEC` on the node. Both
    /// paths are quoted as single shell words.
    public static func jobScript(squeeze: String, specPath: String) -> String {
        """
        #!/bin/sh
        # Written by squeeze: runs one stage on this node against the shared cache.
        exec \(ShellQuote.quote(squeeze)) stage-exec \(ShellQuote.quote(specPath))

        """
    }

    /// A job name: `sq-<stage>-<first 12 digits of the key>`, the stage id
    /// kept to letters, digits and `-_.`.
    public static func jobName(stageID: String, key: String) -> String {
        let stage = String(stageID.unicodeScalars.prefix(40).map { scalar -> Character in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_.".unicodeScalars.contains(scalar))
                ? Character(scalar) : "_"
        })
        return "sq-\(stage)-\(key.prefix(12))"
    }

    /// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
    public static func parseSubmission(_ output: String) -> (id: String, cluster: String?)? {
        guard let line = output.split(whereSeparator: \.isNewline).last(where: { !$0.isEmpty }) else { return nil }
        let parts = line.trimmingCharacters(in: .whitespaces).split(separator: ";", maxSplits: 1).map(String.init)
        guard let id = parts.first, !id.isEmpty, id.allSatisfy({ $0.isNumber || $0 == "_" }) else { return nil }
        return (id, parts.count > 1 ? parts[1] : nil)
    }

    /// `scontrol show job -o ID`: one line of `Key=Value` fields. Values
    /// with spaces (a command line) continue until the next `Key=`.
    public static func parseJobFields(_ output: String) -> [String: String] {
        var fields: [String: String] = [:]
        var lastKey: String?
        for token in output.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if let equals = token.firstIndex(of: "="), token[..<equals].allSatisfy({ $0.isLetter || $0.isNumber || $0 == ":" || $0 == "/" }) {
                let key = String(token[..<equals])
                fields[key] = String(token[token.index(after: equals)...])
                lastKey = key
            } else if let key = lastKey {
                fields[key, default: ""] += " " + token
            }
        }
        return fields
    }

    /// Slurm's local-time timestamps (`2026-12-07T14:05:01`).
    static func parseTime(_ text: String?) -> Date? {
        guard let text, text != "Unknown", text != "None" else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return formatter.date(from: text)
    }

    /// `ClusterName` from `scontrol show config`.
    public static func parseClusterName(_ output: String) -> String? {
        for line in output.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == "ClusterName", !parts[1].isEmpty { return parts[1] }
        }
        return nil
    }
}

/// A job's state as `scontrol show job` reports it.
public struct SlurmJobStatus: Sendable, Equatable {
    public var id: String
    /// `JobState`, e.g. PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT.
    public var state: String
    /// The exit status of the batch script, and the signal that ended it (0 if none).
    public var exitCode: Int32?
    public var exitSignal: Int32?
    public var node: String?
    public var reason: String?
    public var submitTime: Date?
    public var startTime: Date?

    public init(fields: [String: String], id: String) {
        self.id = id
        state = (fields["JobState"] ?? "UNKNOWN").split(separator: " ").first.map(String.init) ?? "UNKNOWN"
        if let exit = fields["ExitCode"] {
            let parts = exit.split(separator: ":").map { Int32($0) }
            exitCode = parts.first ?? nil
            exitSignal = parts.count > 1 ? parts[1] : nil
        }
        if let nodes = fields["BatchHost"] ?? fields["NodeList"], nodes != "(null)", !nodes.isEmpty { node = nodes }
        reason = fields["Reason"].flatMap { $0 == "None" ? nil : $0 }
        submitTime = SlurmCommands.parseTime(fields["SubmitTime"])
        startTime = SlurmCommands.parseTime(fields["StartTime"])
    }

    /// States after which the job never runs again.
    public static let terminalStates: Set<String> = [
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
        "DEADLINE", "SPECIAL_EXIT", "REVOKED",
    ]

    /// States that say the infrastructure, not the stage, ended the job: the
    /// only ones `retries` resubmits. CANCELLED counts when the driver did
    /// not cancel it (someone ran `scancel`, an administrator drained the node).
    public static let infrastructureStates: Set<String> = [
        "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
    ]

    public var isTerminal: Bool { Self.terminalStates.contains(state) }

    /// Seconds between submission and start, once it started.
    public var queueWaitSeconds: Double? {
        guard let submitTime, let startTime, startTime >= submitTime, state != "PENDING" else { return nil }
        return startTime.timeIntervalSince(submitTime)
    }
}
