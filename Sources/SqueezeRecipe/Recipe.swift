import Foundation
import Collections
import SqueezeSupport
import SqueezeYAML

/// A reference inside a `${…}` template.
public enum Reference: Sendable, Hashable, CustomStringConvertible {
    /// `${teacher.model}`: an output of another stage; creates a dependency.
    case stageOutput(stage: String, output: String)
    /// `${env.NAME}` or `${env.NAME:-default}`.
    case environment(name: String, fallback: String?)
    /// `${out}`: this stage's own output directory.
    case outputDirectory
    /// `${seed}`: this stage's derived seed.
    case seed

    public var description: String {
        switch self {
        case .stageOutput(let stage, let output): "${\(stage).\(output)}"
        case .environment(let name, let fallback): fallback.map { "${env.\(name):-\($0)}" } ?? "${env.\(name)}"
        case .outputDirectory: "${out}"
        case .seed: "${seed}"
        }
    }
}

/// A string that may contain references. `${vars.x}` never survives loading:
/// variables are substituted (with their types) when the recipe is loaded.
public struct Template: Sendable, Hashable, CustomStringConvertible {
    public enum Part: Sendable, Hashable {
        case literal(String)
        case reference(Reference)
        /// A variable's text in a shell script: data that must never be read
        /// as script syntax (see `ShellScript`).
        case value(String)
    }

    public var parts: [Part]

    public init(_ parts: [Part]) { self.parts = parts }

    public init(literal: String) { self.parts = [.literal(literal)] }

    public var references: [Reference] {
        parts.compactMap { if case .reference(let r) = $0 { r } else { nil } }
    }

    /// Substitutes every reference through `lookup`.
    public func render(_ lookup: (Reference) throws -> String) rethrows -> String {
        var text = ""
        for part in parts {
            switch part {
            case .literal(let s), .value(let s): text += s
            case .reference(let r): text += try lookup(r)
            }
        }
        return text
    }

    /// The template as written, with `$${` escapes restored.
    public var description: String {
        var text = ""
        for part in parts {
            switch part {
            case .literal(let s), .value(let s): text += s.replacingOccurrences(of: "${", with: "$${")
            case .reference(let r): text += r.description
            }
        }
        return text
    }
}

/// A parameter value as written in a recipe: a JSON-like tree whose strings
/// may hold references. Every node keeps its source position.
public struct ParamValue: Sendable, Hashable {
    public indirect enum Kind: Sendable, Hashable {
        case null
        case bool(Bool)
        case int(Int)
        case double(Double)
        case string(Template)
        case array([ParamValue])
        case object(OrderedDictionary<String, ParamValue>)
    }

    public var kind: Kind
    public var location: SourceLocation

    public init(_ kind: Kind, at location: SourceLocation) {
        self.kind = kind
        self.location = location
    }

    /// Every reference in this value, in source order.
    public var references: [Reference] {
        switch kind {
        case .string(let t): t.references
        case .array(let items): items.flatMap(\.references)
        case .object(let fields): fields.values.flatMap(\.references)
        default: []
        }
    }

    /// The value with every reference substituted through `lookup`.
    public func resolve(_ lookup: (Reference) throws -> String) rethrows -> Value {
        switch kind {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .string(let t): .string(try t.render(lookup))
        case .array(let items): .array(try items.map { try $0.resolve(lookup) })
        case .object(let fields):
            .object(try Dictionary(uniqueKeysWithValues: fields.map { ($0.key, try $0.value.resolve(lookup)) }))
        }
    }
}

/// What a stage asks of the machine; the scheduler packs stages by it.
public struct Resources: Sendable, Hashable {
    /// Cores the stage uses; `nil` means 1. A value of at least the machine's
    /// core count (or `all`) makes the stage run alone.
    public var cores: Int?
    public var allCores: Bool
    /// Memory the stage needs (`memory: 8G`), in bytes.
    public var memoryBytes: Int?
    /// GPUs the stage needs (`gpus: 1`).
    public var gpus: Int?
    /// Wall-clock limit (`time: 2h`, or Slurm's `[D-]HH:MM:SS`), in seconds:
    /// the stage is stopped and fails with TIMEOUT when it runs longer.
    public var timeLimitSeconds: Int?
    /// The cluster partition the stage asks for (cluster executors only).
    public var partition: String?
    /// Where each written resource is, by name, for errors about it (not
    /// part of equality: two stages asking the same things are equal).
    public var locations: [String: SourceLocation]

    public static func == (a: Resources, b: Resources) -> Bool {
        (a.cores, a.allCores, a.memoryBytes, a.gpus, a.timeLimitSeconds, a.partition)
            == (b.cores, b.allCores, b.memoryBytes, b.gpus, b.timeLimitSeconds, b.partition)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(cores)
        hasher.combine(allCores)
        hasher.combine(memoryBytes)
        hasher.combine(gpus)
        hasher.combine(timeLimitSeconds)
        hasher.combine(partition)
    }

    public init(
        cores: Int? = nil, allCores: Bool = false, memoryBytes: Int? = nil, gpus: Int? = nil, timeLimitSeconds: Int? = nil,
        partition: String? = nil, locations: [String: SourceLocation] = [:]
    ) {
        self.cores = cores
        self.allCores = allCores
        self.memoryBytes = memoryBytes
        self.gpus = gpus
        self.timeLimitSeconds = timeLimitSeconds
        self.partition = partition
        self.locations = locations
    }

    /// The resource names a recipe may write.
    public static let names = ["cores", "memory", "gpus", "time", "partition"]

    /// `8G`, `512M`, `1.5T`, `64K` (binary units, as Slurm's `--mem`; a
    /// trailing `B` or `iB` allowed) in bytes; nil for anything else.
    public static func memory(_ text: String) -> Int? {
        var body = text.trimmingCharacters(in: .whitespaces).uppercased()
        for suffix in ["IB", "B"] where body.hasSuffix(suffix) && body.count > suffix.count {
            body.removeLast(suffix.count)
            break
        }
        guard let unit = body.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][String(unit)],
              let number = Double(body.dropLast()), number > 0, number.isFinite
        else { return nil }
        let bytes = number * pow(1024, Double(power))
        return bytes < Double(Int.max) ? Int(bytes.rounded(.up)) : nil
    }

    /// `90s`, `30m`, `2h`, `1d`, or Slurm's `MM`, `MM:SS`, `HH:MM:SS`,
    /// `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, in seconds; nil for anything else.
    public static func duration(_ text: String) -> Int? {
        let body = text.trimmingCharacters(in: .whitespaces)
        if let unit = body.last, let scale = ["s": 1, "m": 60, "h": 3600, "d": 86400][String(unit)],
           let number = Double(body.dropLast()), number > 0, number.isFinite, number * Double(scale) < 1e12
        {
            return Int((number * Double(scale)).rounded(.up))
        }
        var days = 0
        var clock = Substring(body)
        if let dash = body.firstIndex(of: "-") {
            guard let value = Int(body[..<dash]), value >= 0 else { return nil }
            days = value
            clock = body[body.index(after: dash)...]
        }
        let parts = clock.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard !parts.isEmpty, parts.count <= 3, parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
        let values = parts.map { $0 ?? 0 }
        let seconds: Int
        if body.contains("-") {
            // D-HH, D-HH:MM, D-HH:MM:SS
            seconds = values[0] * 3600 + (values.count > 1 ? values[1] * 60 : 0) + (values.count > 2 ? values[2] : 0)
        } else {
            // MM, MM:SS, HH:MM:SS
            switch values.count {
            case 1: seconds = values[0] * 60
            case 2: seconds = values[0] * 60 + values[1]
            default: seconds = values[0] * 3600 + values[1] * 60 + values[2]
            }
        }
        let total = days * 86400 + seconds
        return total > 0 ? total : nil
    }
}

/// One stage of a validated recipe.
public struct StageSpec: Sendable {
    public var id: String
    /// The stage type (`uses:`).
    public var uses: String
    /// Every declared parameter: written ones as written (vars substituted),
    /// defaulted ones with their defaults. Keys in declaration order.
    public var with: OrderedDictionary<String, ParamValue>
    /// Explicit `needs:`.
    public var needs: [String]
    /// All stages this one depends on: `needs` plus every stage referenced in
    /// `with`, de-duplicated, in first-mention order.
    public var dependencies: [String]
    /// `backend:` of the stage, or the recipe's.
    public var backend: String
    public var resources: Resources
    /// Where the stage's id is written.
    public var location: SourceLocation
    /// `description:` of the stage, if written.
    public var description: String? = nil
    /// The stage id as written in the recipe. A stage of a matrix sweep that
    /// depends on swept variables has one instance per combination of them,
    /// `id` being `baseID[NAME=VALUE,…]`; its references and its seed use
    /// `baseID`, so an instance has the key the stage has in a plain run with
    /// the same values.
    public var baseID: String
    /// The swept variables this instance is bound to, sorted by name; empty
    /// when the stage does not depend on any.
    public var matrixValues: OrderedDictionary<String, Value> = [:]
    /// `retries:`: how often a cluster executor resubmits the stage's job
    /// after an infrastructure failure (node failure, preemption, TIMEOUT,
    /// OUT_OF_MEMORY); nil leaves it to the site file. Never part of the key.
    public var retries: Int? = nil
    /// Where `retries:` is written.
    public var retriesLocation: SourceLocation? = nil

    public init(
        id: String, uses: String, with: OrderedDictionary<String, ParamValue>, needs: [String],
        dependencies: [String], backend: String, resources: Resources, location: SourceLocation
    ) {
        self.id = id
        self.baseID = id
        self.uses = uses
        self.with = with
        self.needs = needs
        self.dependencies = dependencies
        self.backend = backend
        self.resources = resources
        self.location = location
    }
}

/// A parsed and fully validated recipe (version 1).
public struct Recipe: Sendable {
    /// The recipe file as given.
    public var file: String
    /// The directory relative paths in the recipe are resolved against.
    public var directory: String
    public var version: Int
    public var name: String
    public var backend: String
    public var seed: Int
    /// Variables after `--set` overrides, in source order.
    public var vars: OrderedDictionary<String, Value>
    /// Stages in source order.
    public var stages: OrderedDictionary<String, StageSpec>
    /// `description:` of the recipe, if written.
    public var description: String? = nil
    /// The profile `vars.profile` chose, already applied to `vars`.
    public var profile: String? = nil
    /// The matrix sweep, when `matrix:` (or `--matrix`) gives one; `stages`
    /// then holds every instance.
    public var matrix: MatrixSweep? = nil
    /// What validation found worth saying about a valid recipe (an unpinned
    /// model source, …), by position.
    public var warnings: [Diagnostic] = []

    public init(
        file: String, directory: String, version: Int, name: String, backend: String, seed: Int,
        vars: OrderedDictionary<String, Value>, stages: OrderedDictionary<String, StageSpec>
    ) {
        self.file = file
        self.directory = directory
        self.version = version
        self.name = name
        self.backend = backend
        self.seed = seed
        self.vars = vars
        self.stages = stages
    }
}
