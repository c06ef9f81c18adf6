import Foundation
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

/// Where and how a site runs recipes: `squeeze-site.yaml`, found next to the
/// recipe or at `$SQUEEZE_SITE`. Recipes stay portable; the cluster's
/// partition, account and shared cache are the site's business.
///
/// ```yaml
/// slurm:
///   partition: cpu
///   account: compression
///   qos: normal
///   time: 2h            # default --time for stages without resources.time
///   memory: 8G          # default --mem for stages without resources.memory
///   extra_sbatch_flags: [--constraint=zen4]
///   retries: { count: 2, backoff: 30s }
///   poll: { min: 1s, max: 30s }
///   squeeze: /shared/bin/squeeze   # the squeeze the jobs run (default: this one)
/// cache:
///   directory: /shared/squeeze-cache
///   remote: https://cache.example.org/squeeze   # the shared HTTP cache
/// ```
public struct SiteConfiguration: Sendable, Equatable {
    /// The file it was read from, nil for the built-in defaults.
    public var file: String?
    public var slurm: SlurmSettings
    /// `cache.directory`: the shared cache every node reads and writes.
    public var cacheDirectory: String?
    /// `cache.remote`: the shared HTTP cache (an http or https URL), used
    /// when neither `--remote` nor `$SQUEEZE_REMOTE_CACHE` names one.
    public var remoteCache: String?

    public init(file: String? = nil, slurm: SlurmSettings = SlurmSettings(), cacheDirectory: String? = nil, remoteCache: String? = nil) {
        self.file = file
        self.slurm = slurm
        self.cacheDirectory = cacheDirectory
        self.remoteCache = remoteCache
    }

    /// The site file for a recipe (`locate`), read and checked, or the
    /// built-in defaults when there is none.
    public static func forRecipe(directory: String, environment: [String: String]) throws -> SiteConfiguration {
        guard let path = locate(recipeDirectory: directory, environment: environment) else { return SiteConfiguration() }
        guard FileManager.default.fileExists(atPath: path) else {
            throw UserError("the site file \(path) (from $SQUEEZE_SITE) does not exist")
        }
        return try load(file: path)
    }

    /// The file name looked for next to the recipe.
    public static let fileName = "squeeze-site.yaml"

    /// `$SQUEEZE_SITE` if set, else `squeeze-site.yaml` in the recipe's
    /// directory if it exists, else nil.
    public static func locate(recipeDirectory: String, environment: [String: String]) -> String? {
        if let path = environment["SQUEEZE_SITE"], !path.isEmpty { return path }
        let beside = (recipeDirectory as NSString).appendingPathComponent(fileName)
        return FileManager.default.fileExists(atPath: beside) ? beside : nil
    }

    /// Reads and checks a site file; every problem is reported with its position.
    public static func load(file path: String) throws(Diagnostics) -> SiteConfiguration {
        try read(file: path) { () throws(Diagnostic) in try YAMLParser.parseFile(atPath: path, displayName: path) }
    }

    /// Reads a site file's text, reported as `file` (tests).
    public static func load(text: String, file: String) throws(Diagnostics) -> SiteConfiguration {
        try read(file: file) { () throws(Diagnostic) in try YAMLParser.parse(text, file: file) }
    }

    private static func read(file: String, _ parse: () throws(Diagnostic) -> YAMLNode?) throws(Diagnostics) -> SiteConfiguration {
        let root: YAMLNode?
        do {
            root = try parse()
        } catch {
            throw Diagnostics([error])
        }
        var reader = SiteReader()
        let site = reader.read(root, file: file)
        guard reader.problems.isEmpty else { throw Diagnostics(reader.sortedProblems) }
        return site
    }
}

/// The `slurm:` section of the site file.
public struct SlurmSettings: Sendable, Equatable {
    public var partition: String?
    public var account: String?
    public var qos: String?
    /// Default `--time` for stages without `resources.time`.
    public var timeSeconds: Int?
    /// Default `--mem` for stages without `resources.memory`.
    public var memoryBytes: Int?
    /// Passed to `sbatch` as written, before the job script.
    public var extraFlags: [String]
    /// Resubmissions after an infrastructure failure, for stages without `retries:`.
    public var retries: Int
    /// Wait before the first resubmission; doubled for each further one.
    public var backoffSeconds: Double
    /// First and longest wait between two looks at a job's state.
    public var pollMinimumSeconds: Double
    public var pollMaximumSeconds: Double
    /// The squeeze executable the jobs run (default: the driver's own).
    public var squeezeExecutable: String?

    public init(
        partition: String? = nil, account: String? = nil, qos: String? = nil, timeSeconds: Int? = nil,
        memoryBytes: Int? = nil, extraFlags: [String] = [], retries: Int = 0, backoffSeconds: Double = 30,
        pollMinimumSeconds: Double = 0.5, pollMaximumSeconds: Double = 15, squeezeExecutable: String? = nil
    ) {
        self.partition = partition
        self.account = account
        self.qos = qos
        self.timeSeconds = timeSeconds
        self.memoryBytes = memoryBytes
        self.extraFlags = extraFlags
        self.retries = retries
        self.backoffSeconds = backoffSeconds
        self.pollMinimumSeconds = pollMinimumSeconds
        self.pollMaximumSeconds = pollMaximumSeconds
        self.squeezeExecutable = squeezeExecutable
    }
}

/// Reads the site file's tree, collecting problems with their positions.
private struct SiteReader {
    var problems: [Diagnostic] = []

    /// The problems in file order.
    var sortedProblems: [Diagnostic] {
        problems.sorted { ($0.location?.line ?? 0, $0.location?.column ?? 0) < ($1.location?.line ?? 0, $1.location?.column ?? 0) }
    }

    static let topKeys = ["slurm", "cache"]
    static let slurmKeys = [
        "partition", "account", "qos", "time", "memory", "extra_sbatch_flags", "retries", "poll", "squeeze",
    ]
    static let cacheKeys = ["directory", "remote"]
    static let retriesKeys = ["count", "backoff"]
    static let pollKeys = ["min", "max"]

    mutating func read(_ root: YAMLNode?, file: String) -> SiteConfiguration {
        var site = SiteConfiguration(file: file)
        guard let root else { return site }
        guard let entries = mapping(root, what: "the site file") else { return site }
        for entry in entries {
            guard let name = key(entry, allowed: Self.topKeys, in: "the site file") else { continue }
            switch name {
            case "slurm": site.slurm = readSlurm(entry.value)
            default:
                for field in mapping(entry.value, what: "`cache`") ?? [] {
                    guard let name = key(field, allowed: Self.cacheKeys, in: "`cache`") else { continue }
                    if name == "remote" {
                        guard let text = nonEmptyString(field.value, what: "`cache.remote`") else { continue }
                        if let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false {
                            site.remoteCache = text
                        } else {
                            // Not echoed: the text may hold a password.
                            error("`cache.remote` must be an http:// or https:// URL with a host", at: field.value.location,
                                  hint: "e.g. `remote: https://cache.example.org/squeeze`")
                        }
                    } else if let directory = nonEmptyString(field.value, what: "`cache.directory`") {
                        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
                        site.cacheDirectory = directory.hasPrefix("/") ? directory
                            : URL(fileURLWithPath: directory, relativeTo: URL(fileURLWithPath: base, isDirectory: true)).standardizedFileURL.path
                    }
                }
            }
        }
        if site.slurm.pollMinimumSeconds > site.slurm.pollMaximumSeconds, let node = root["slurm"]?["poll"] {
            error("`poll.min` is longer than `poll.max`", at: node.location, hint: "e.g. `poll: { min: 1s, max: 30s }`")
        }
        return site
    }

    private mutating func readSlurm(_ node: YAMLNode) -> SlurmSettings {
        var settings = SlurmSettings()
        for entry in mapping(node, what: "`slurm`") ?? [] {
            guard let name = key(entry, allowed: Self.slurmKeys, in: "`slurm`") else { continue }
            let value = entry.value
            switch name {
            case "partition": settings.partition = nonEmptyString(value, what: "`slurm.partition`")
            case "account": settings.account = nonEmptyString(value, what: "`slurm.account`")
            case "qos": settings.qos = nonEmptyString(value, what: "`slurm.qos`")
            case "squeeze": settings.squeezeExecutable = nonEmptyString(value, what: "`slurm.squeeze`")
            case "time": settings.timeSeconds = duration(value, what: "`slurm.time`").map { Int($0.rounded(.up)) }
            case "memory":
                if case .string(let text) = YAMLScalar.resolve(value), let bytes = Resources.memory(text) {
                    settings.memoryBytes = bytes
                } else {
                    error("`slurm.memory` must be an amount with a unit, got \(shown(value))", at: value.location, hint: "e.g. `memory: 8G`")
                }
            case "extra_sbatch_flags":
                guard let items = value.items else {
                    error("`slurm.extra_sbatch_flags` must be a list of sbatch flags, got \(value.kindDescription)",
                          at: value.location, hint: "e.g. `extra_sbatch_flags: [--constraint=zen4, --exclusive]`")
                    continue
                }
                settings.extraFlags = items.compactMap { item in
                    guard let flag = nonEmptyString(item, what: "an sbatch flag") else { return nil }
                    guard flag.hasPrefix("-") else {
                        error("`\(flag)` is not an sbatch flag", at: item.location, hint: "write flags with their value, e.g. `--constraint=zen4`")
                        return nil
                    }
                    return flag
                }
            case "retries":
                if case .int(let count) = YAMLScalar.resolve(value), value.scalar != nil {
                    settings.retries = count >= 0 ? count : settings.retries
                    if count < 0 { error("`slurm.retries` must be at least 0, got \(count)", at: value.location) }
                    continue
                }
                for field in mapping(value, what: "`slurm.retries`") ?? [] {
                    guard let part = key(field, allowed: Self.retriesKeys, in: "`slurm.retries`") else { continue }
                    if part == "count" {
                        if case .int(let count) = YAMLScalar.resolve(field.value), count >= 0 {
                            settings.retries = count
                        } else {
                            error("`retries.count` must be a whole number of at least 0, got \(shown(field.value))", at: field.value.location)
                        }
                    } else if let seconds = duration(field.value, what: "`retries.backoff`", allowZero: true) {
                        settings.backoffSeconds = seconds
                    }
                }
            default:
                for field in mapping(value, what: "`slurm.poll`") ?? [] {
                    guard let part = key(field, allowed: Self.pollKeys, in: "`slurm.poll`") else { continue }
                    guard let seconds = duration(field.value, what: "`poll.\(part)`") else { continue }
                    if part == "min" { settings.pollMinimumSeconds = seconds } else { settings.pollMaximumSeconds = seconds }
                }
            }
        }
        return settings
    }

    // MARK: Helpers

    private mutating func error(_ message: String, at location: SourceLocation, hint: String? = nil) {
        problems.append(Diagnostic(message, at: location, hint: hint))
    }

    private func shown(_ node: YAMLNode) -> String {
        node.scalar.map { "`\($0)`" } ?? node.kindDescription
    }

    private mutating func mapping(_ node: YAMLNode, what: String) -> [YAMLNode.Entry]? {
        if let entries = node.entries { return entries }
        if node.scalar != nil, YAMLScalar.resolve(node) == .null { return [] }
        error("\(what) must be a mapping, got \(node.kindDescription)", at: node.location)
        return nil
    }

    private mutating func key(_ entry: YAMLNode.Entry, allowed: [String], in what: String) -> String? {
        guard let name = entry.key.scalar else {
            error("keys in \(what) must be names", at: entry.key.location)
            return nil
        }
        guard allowed.contains(name) else {
            error(
                "unknown key `\(name)` in \(what)", at: entry.key.location,
                hint: Suggestion.hint(for: name, in: allowed) ?? "keys are \(allowed.map { "`\($0)`" }.joined(separator: ", "))")
            return nil
        }
        return name
    }

    private mutating func nonEmptyString(_ node: YAMLNode, what: String) -> String? {
        if node.scalar != nil, case .string(let text) = YAMLScalar.resolve(node), !text.isEmpty { return text }
        error("\(what) must be a non-empty string, got \(shown(node))", at: node.location)
        return nil
    }

    /// `30s`, `2m`, `1h` or Slurm's clock forms; a bare number is seconds here.
    private mutating func duration(_ node: YAMLNode, what: String, allowZero: Bool = false) -> Double? {
        switch YAMLScalar.resolve(node) {
        case .int(let seconds) where node.scalar != nil && (seconds > 0 || allowZero && seconds == 0):
            return Double(seconds)
        case .double(let seconds) where seconds.isFinite && (seconds > 0 || allowZero && seconds == 0):
            return seconds
        case .string(let text) where node.scalar != nil:
            if allowZero, text == "0s" { return 0 }
            if let unit = text.last, let scale = ["s": 1.0, "m": 60.0, "h": 3600.0][String(unit)],
               let number = Double(text.dropLast()), number.isFinite, number > 0 {
                return number * scale
            }
            if let seconds = Resources.duration(text) { return Double(seconds) }
        default: break
        }
        error("\(what) must be a duration such as `30s`, `5m` or `1h`, got \(shown(node))", at: node.location)
        return nil
    }
}
