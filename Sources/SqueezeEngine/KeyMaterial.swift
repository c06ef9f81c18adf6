import Foundation
import SqueezeRecipe
import SqueezeSupport

/// Everything a stage's outputs may depend on. Its canonical JSON's SHA-256 is
/// the stage key; nothing else decides whether a stage reruns.
public struct KeyMaterial: Sendable, Codable, Equatable {
    /// Bumped when the engine changes how keys or artifacts are laid out.
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var stageType: String
    public var stageVersion: Int
    /// Parameters with `${stage.output}` replaced by digests, `path` values by
    /// their content digests and `${env.X}` left unexpanded.
    public var params: Value
    /// Digest of every upstream output the stage reads, by reference text.
    public var inputs: [String: String]
    public var backend: String
    /// The stage seed, for a stage that draws on it (nil: the key holds no seed).
    public var seed: UInt64?

    public var canonicalValue: Value {
        var fields: [String: Value] = [
            "format_version": .int(formatVersion),
            "stage_type": .string(stageType),
            "stage_version": .int(stageVersion),
            "params": params,
            "inputs": .object(inputs.mapValues { .string($0) }),
            "backend": .string(backend),
        ]
        // A string: seeds use all 64 bits, JSON numbers do not round-trip them.
        if let seed { fields["seed"] = .string(String(seed)) }
        return .object(fields)
    }

    /// The stage key: lowercase hex SHA-256 of the canonical JSON.
    public var key: String {
        Hashing.sha256(Data(canonicalValue.canonicalJSON.utf8)).hex
    }

    /// The parameters that enter the key: without those declared
    /// `outsideKey` (they cannot change the output bits at any value), and
    /// without those declared `keyedOnlyWhenChanged` whose resolved value
    /// equals their default, so keys made before they existed stay valid.
    public static func keyedParameters(_ params: Value, of descriptor: StageTypeDescriptor) -> Value {
        guard case .object(var fields) = params else { return params }
        for parameter in descriptor.parameters where parameter.outsideKey {
            fields[parameter.name] = nil
        }
        for parameter in descriptor.parameters where parameter.keyedOnlyWhenChanged {
            if let value = fields[parameter.name], let defaultValue = parameter.defaultValue,
               differingPaths(value, defaultValue, prefix: "").isEmpty {
                fields[parameter.name] = nil
            }
        }
        return .object(fields)
    }

    /// Why a stage with this material must run when `previous` was what last ran.
    public func changes(since previous: KeyMaterial) -> [String] {
        var reasons: [String] = []
        if previous.formatVersion != formatVersion {
            reasons.append("cache format changed (\(previous.formatVersion) → \(formatVersion))")
        }
        if previous.stageType != stageType {
            reasons.append("stage type changed (\(previous.stageType) → \(stageType))")
        } else if previous.stageVersion != stageVersion {
            reasons.append("stage version bumped (\(previous.stageVersion) → \(stageVersion))")
        }
        let changedInputs = Set(inputs.keys).union(previous.inputs.keys).filter { inputs[$0] != previous.inputs[$0] }.sorted()
        let paramPaths = Self.differingPaths(params, previous.params, prefix: "")
        // A path parameter whose digest changed is an input change, not a param edit.
        let contentChanges = paramPaths.filter { Self.isDigest(Self.lookup($0, in: params)) && Self.isDigest(Self.lookup($0, in: previous.params)) }
        // So is an unpinned parameter that now stands for other content (`TEXT[@LABEL]@DIGEST`).
        let keyedChanges = paramPaths.compactMap { path -> (path: String, before: String, now: String)? in
            guard let before = Self.keyedText(Self.lookup(path, in: previous.params)),
                  let now = Self.keyedText(Self.lookup(path, in: params)) else { return nil }
            return (path, before, now)
        }
        let paramChanges = paramPaths.filter { path in !contentChanges.contains(path) && !keyedChanges.contains { $0.path == path } }
        if !paramChanges.isEmpty { reasons.append("params changed: " + paramChanges.joined(separator: ", ")) }
        let inputChanges = changedInputs + contentChanges
        if !inputChanges.isEmpty { reasons.append("input changed: " + inputChanges.joined(separator: ", ")) }
        for change in keyedChanges {
            let what = change.before == change.now
                ? "`\(change.now)` now stands for other content" : "`\(change.before)` → `\(change.now)`"
            reasons.append("content changed: \(change.path) (\(what))")
        }
        if previous.backend != backend { reasons.append("backend changed (\(previous.backend) → \(backend))") }
        switch (previous.seed, seed) {
        case (let before?, let now?) where before != now: reasons.append("seed changed")
        case (nil, .some): reasons.append("the stage now draws on the seed")
        case (.some, nil): reasons.append("the stage no longer draws on the seed")
        default: break
        }
        return reasons
    }

    private static func isDigest(_ value: Value?) -> Bool {
        if case .string(let s) = value { return isDigest(s) }
        return false
    }

    private static func isDigest(_ text: Substring) -> Bool {
        text.hasPrefix("sha256:") && text.count == 71 && text.dropFirst(7).allSatisfy(\.isHexDigit)
    }

    private static func isDigest(_ text: String) -> Bool { isDigest(Substring(text)) }

    /// The `TEXT[@LABEL]` of a parameter keyed by the content it stands for
    /// (`TEXT[@LABEL]@sha256:…`, see `ParameterResolver.resolveForKey`).
    private static func keyedText(_ value: Value?) -> String? {
        guard case .string(let text) = value, let separator = text.lastIndex(of: "@"),
              isDigest(text[text.index(after: separator)...]) else { return nil }
        return String(text[..<separator])
    }

    private static func lookup(_ path: String, in value: Value) -> Value? {
        var current: Value? = value
        for component in pathComponents(path) {
            switch (current, component) {
            case (.object(let fields), .key(let key)): current = fields[key]
            case (.array(let items), .index(let index)): current = items.indices.contains(index) ? items[index] : nil
            default: return nil
            }
        }
        return current
    }

    private enum PathComponent { case key(String), index(Int) }

    private static func pathComponents(_ path: String) -> [PathComponent] {
        var components: [PathComponent] = []
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var indices: [Int] = []
            while let open = name.lastIndex(of: "["), name.hasSuffix("]"),
                  let index = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) {
                indices.insert(index, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty { components.append(.key(String(name))) }
            components += indices.map { .index($0) }
        }
        return components
    }

    /// Dotted paths (`lr`, `inputs[1]`, `env.HOME`) where two values differ.
    static func differingPaths(_ a: Value, _ b: Value, prefix: String) -> [String] {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            return Set(x.keys).union(y.keys).sorted().flatMap { key -> [String] in
                let path = prefix.isEmpty ? key : "\(prefix).\(key)"
                switch (x[key], y[key]) {
                case (let l?, let r?): return differingPaths(l, r, prefix: path)
                default: return [path]
                }
            }
        case (.array(let x), .array(let y)) where x.count == y.count:
            return zip(x, y).enumerated().flatMap { differingPaths($1.0, $1.1, prefix: "\(prefix)[\($0)]") }
        case (.int(let i), .double(let d)), (.double(let d), .int(let i)):
            // The index's JSON reads a recorded 1.0 back as the integer 1.
            return Double(i) == d ? [] : [prefix.isEmpty ? "(all)" : prefix]
        default:
            return a == b ? [] : [prefix.isEmpty ? "(all)" : prefix]
        }
    }
}

extension KeyMaterial {
    private enum CodingKeys: String, CodingKey {
        case formatVersion, stageType, stageVersion, params, inputs, backend, seed
    }

    /// As `Codable` (the last-run index), the seed is its decimal string, as
    /// in `canonicalValue`: seeds use all 64 bits and a JSON value holds
    /// integers only up to `Int.max`. Index files written before held it as a
    /// number, which reads when it is exact.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try container.decode(Int.self, forKey: .formatVersion)
        stageType = try container.decode(String.self, forKey: .stageType)
        stageVersion = try container.decode(Int.self, forKey: .stageVersion)
        params = try container.decode(Value.self, forKey: .params)
        inputs = try container.decode([String: String].self, forKey: .inputs)
        backend = try container.decode(String.self, forKey: .backend)
        if let text = try? container.decodeIfPresent(String.self, forKey: .seed) {
            guard let seed = UInt64(text) else {
                throw DecodingError.dataCorruptedError(forKey: .seed, in: container, debugDescription: "`\(text)` is not a seed")
            }
            self.seed = seed
        } else {
            seed = try container.decodeIfPresent(UInt64.self, forKey: .seed)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(formatVersion, forKey: .formatVersion)
        try container.encode(stageType, forKey: .stageType)
        try container.encode(stageVersion, forKey: .stageVersion)
        try container.encode(params, forKey: .params)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(backend, forKey: .backend)
        try container.encodeIfPresent(seed.map { String($0) }, forKey: .seed)
    }
}
