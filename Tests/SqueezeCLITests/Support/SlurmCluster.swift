import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real one-node Slurm cluster on loopback for the Slurm executor's tests:
/// `munged` with its own key and socket, `slurmctld` and `slurmd` with a
/// generated `slurm.conf` (this machine's cores, free ports), all in a
/// scratch directory (../shared/design/slurm-local.md). One cluster serves
/// every test of the process; it is torn down (by the pids in its pid
/// files) when the test process exits, and a cluster left by a test process
/// that was killed is torn down by the next one.
final class SlurmCluster: Sendable {
    let scratch: String
    let configuration: String
    let clusterName = "sqtest"

    /// `SLURM_CONF` for squeeze and every Slurm command.
    var environment: [String: String?] { ["SLURM_CONF": configuration] }

    static let daemons = ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"]
    static let commands = ["sbatch", "squeue", "scontrol", "scancel", "sinfo"]

    /// Why the cluster cannot be started here, or nil when everything is installed.
    static var unavailableReason: String? {
        let missing = daemons.filter { !FileManager.default.isExecutableFile(atPath: $0) }
            + commands.filter { find($0) == nil }
        guard missing.isEmpty else {
            return "Slurm is not installed (missing \(missing.joined(separator: ", "))); `scripts/bootstrap` installs slurmctld slurmd slurm-client munge"
        }
        guard getuid() == 0 else { return "the one-node Slurm cluster needs root (slurmd runs jobs as their user)" }
        return nil
    }

    /// Whether the Slurm tests run: when the cluster can start, and always
    /// under CI=true (where a missing package must fail, not skip).
    static var testsEnabled: Bool {
        if ProcessInfo.processInfo.environment["CI"] == "true" { return true }
        if let reason = unavailableReason {
            print("SlurmExecutorTests: skipping: \(reason)")
            return false
        }
        return true
    }

    private static let sharedCluster = Mutex<Result<SlurmCluster, ClusterError>?>(nil)

    /// The cluster of this test process, started on first use.
    static func shared() throws -> SlurmCluster {
        try sharedCluster.withLock { state in
            if let state { return try state.get() }
            let result: Result<SlurmCluster, ClusterError>
            do {
                result = .success(try start())
            } catch let error as ClusterError {
                result = .failure(error)
            } catch {
                result = .failure(ClusterError(description: "\(error)"))
            }
            state = result
            if case .success = result { atexit { SlurmCluster.stopShared() } }
            return try result.get()
        }
    }

    private static func stopShared() {
        if case .success(let cluster)? = sharedCluster.withLock({ $0 }) { cluster.stop() }
    }

    struct ClusterError: Error, CustomStringConvertible {
        var description: String
    }

    private init(scratch: String) {
        self.scratch = scratch
        self.configuration = scratch + "/slurm.conf"
    }

    private static let scratchPrefix = "squeeze-slurm-test-"

    private static func start() throws -> SlurmCluster {
        if let reason = unavailableReason { throw ClusterError(description: reason) }
        removeAbandonedClusters()
        let base = FileManager.default.temporaryDirectory.path
        let scratch = base + "/" + scratchPrefix + UUID().uuidString.prefix(8).lowercased()
        let cluster = SlurmCluster(scratch: scratch)
        for directory in ["", "/munge", "/state", "/spool", "/log"] {
            try FileManager.default.createDirectory(atPath: scratch + directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        try String(getpid()).write(toFile: scratch + "/owner.pid", atomically: true, encoding: .utf8)
        do {
            try cluster.startDaemons()
            return cluster
        } catch {
            let logs = cluster.daemonLogs()
            cluster.stop()
            throw ClusterError(description: "\(error)\n\(logs)")
        }
    }

    private func startDaemons() throws {
        var key = [UInt8](repeating: 0, count: 1024)
        for index in key.indices { key[index] = UInt8.random(in: 0...255) }
        let keyFile = scratch + "/munge/munge.key"
        FileManager.default.createFile(atPath: keyFile, contents: Data(key), attributes: [.posixPermissions: 0o400])
        try run("/usr/sbin/munged", [
            "--force", "--key-file=\(keyFile)", "--socket=\(scratch)/munge/munge.socket",
            "--pid-file=\(scratch)/munge/munged.pid", "--log-file=\(scratch)/log/munged.log",
            "--seed-file=\(scratch)/munge/munged.seed",
        ])

        let host = Self.shortHostName()
        let ports = try Self.freePorts(2)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memoryMiB = Int(ProcessInfo.processInfo.physicalMemory / 1_048_576) * 8 / 10
        let conf = """
            ClusterName=\(clusterName)
            SlurmctldHost=\(host)(127.0.0.1)
            SlurmctldPort=\(ports[0])
            SlurmdPort=\(ports[1])
            AuthType=auth/munge
            AuthInfo=socket=\(scratch)/munge/munge.socket
            CredType=cred/munge
            StateSaveLocation=\(scratch)/state
            SlurmdSpoolDir=\(scratch)/spool
            SlurmctldPidFile=\(scratch)/slurmctld.pid
            SlurmdPidFile=\(scratch)/slurmd.pid
            SlurmctldLogFile=\(scratch)/log/slurmctld.log
            SlurmdLogFile=\(scratch)/log/slurmd.log
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SwitchType=switch/none
            MpiDefault=none
            SchedulerType=sched/backfill
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            ReturnToService=2
            SlurmUser=root
            SlurmdUser=root
            KillWait=2
            NodeName=\(host) NodeAddr=127.0.0.1 CPUs=\(cores) RealMemory=\(memoryMiB) State=UNKNOWN
            PartitionName=debug Nodes=\(host) Default=YES MaxTime=INFINITE State=UP

            """
        try conf.write(toFile: configuration, atomically: true, encoding: .utf8)
        try run("/usr/sbin/slurmctld", [])
        try run("/usr/sbin/slurmd", [])

        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            last = (try? command("sinfo", ["-h", "-o", "%t"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if last == "idle" { return }
            usleep(250_000)
        }
        throw ClusterError(description: "the node did not become idle within 60 s (sinfo says `\(last)`)")
    }

    /// Ends the daemons by the pids in their pid files, slurmd first.
    func stop() {
        Self.stopDaemons(in: scratch)
        try? FileManager.default.removeItem(atPath: scratch)
    }

    private static func stopDaemons(in scratch: String) {
        for pidFile in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            guard let text = try? String(contentsOfFile: scratch + "/" + pidFile, encoding: .utf8),
                  let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else { continue }
            kill(pid, SIGTERM)
            for _ in 0..<50 where ProcessTable.isAlive(pid) { usleep(100_000) }
            if ProcessTable.isAlive(pid) { kill(pid, SIGKILL) }
        }
    }

    /// Clusters of test processes that died without tearing theirs down.
    private static func removeAbandonedClusters() {
        let base = FileManager.default.temporaryDirectory.path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix(scratchPrefix) {
            let scratch = base + "/" + name
            let owner = (try? String(contentsOfFile: scratch + "/owner.pid", encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if let owner, ProcessTable.isAlive(owner) { continue }
            stopDaemons(in: scratch)
            try? FileManager.default.removeItem(atPath: scratch)
        }
    }

    /// The last lines of every daemon log, for errors.
    func daemonLogs() -> String {
        let directory = scratch + "/log"
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { name in
            let text = (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
            return "--- \(name)\n" + text.split(separator: "\n").suffix(30).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    /// Runs a Slurm client command against this cluster; its stdout and stderr.
    @discardableResult
    func command(_ name: String, _ arguments: [String]) throws -> String {
        guard let executable = Self.find(name) else { throw ClusterError(description: "`\(name)` is not installed") }
        return try run(executable, arguments, check: false)
    }

    /// Job ids of the jobs of this cluster still queued or running, with their names.
    func queuedJobs() throws -> [(id: String, name: String, state: String)] {
        try command("squeue", ["-h", "-o", "%i|%j|%T"]).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            return fields.count == 3 ? (fields[0], fields[1], fields[2]) : nil
        }
    }

    /// `scontrol show job -o ID` as fields.
    func job(_ id: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for token in try command("scontrol", ["show", "job", "-o", id]).split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let equals = token.firstIndex(of: "=") else { continue }
            fields[String(token[..<equals])] = String(token[token.index(after: equals)...])
        }
        return fields
    }

    /// Runs a program to its end; what it printed. Spawned directly and
    /// reaped with `waitpid`; the output goes through a file, not a pipe,
    /// since a daemon keeps its inherited descriptors open after the
    /// program that started it has exited.
    @discardableResult
    private func run(_ executable: String, _ arguments: [String], check: Bool = true) throws -> String {
        let capture = scratch + "/output-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: capture) }
        var environment = ProcessInfo.processInfo.environment
        environment["SLURM_CONF"] = configuration
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, capture, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard spawned == 0 else {
            throw ClusterError(description: "cannot start \(executable): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: capture, encoding: .utf8)) ?? ""
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : -1
        if check, exited != 0 {
            throw ClusterError(description: "`\(executable) \(arguments.joined(separator: " "))` exited \(exited): \(text)")
        }
        return text
    }

    private static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (path.split(separator: ":").map { "\($0)/\(name)" } + ["/usr/bin/\(name)", "/usr/sbin/\(name)"])
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private static func shortHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return String(name.split(separator: ".").first ?? "localhost")
    }

    /// Ports the kernel reports free on loopback (bound to port 0, then closed).
    private static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ClusterError(description: "socket() failed") }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw ClusterError(description: "cannot bind a loopback port") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}
