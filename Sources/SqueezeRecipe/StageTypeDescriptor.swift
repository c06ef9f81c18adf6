import Collections
import SqueezeSupport
import SqueezeYAML

/// The type of a stage parameter, as a stage type declares it.
///
/// The same declarations drive recipe validation, `squeeze stages TYPE` and the
/// generated JSON Schema, so the three cannot drift apart.
public indirect enum ParamType: Sendable, Hashable, CustomStringConvertible {
    case string
    case int
    /// Any number; integers are accepted and widened.
    case number
    case bool
    /// A file or directory the stage reads. Relative paths are relative to the
    /// recipe's directory. It enters the cache key through its *content digest*,
    /// never through its spelling.
    case path
    /// A reference to an upstream stage's output of the given artifact kind
    /// (`${teacher.model}`); "any" accepts every kind.
    case artifact(String)
    /// A file fetched from the network and pinned by its SHA-256: a mapping
    /// `{url: http(s)://…, sha256: 64 hex digits, files: …}`, where `files`
    /// (optional, its shape checked by the stage type) names what the stage
    /// reads inside an archive. It enters the cache key through the pin and
    /// `files`, never through the URL: a mirror with the same bytes is a hit.
    case download
    case array(ParamType)
    /// A mapping with string keys and values of one type.
    case map(ParamType)
    case oneOf([ParamType])
    case enumeration([String])
    case any

    public var description: String {
        switch self {
        case .string: "string"
        case .int: "integer"
        case .number: "number"
        case .bool: "boolean"
        case .path: "path"
        case .artifact(let kind): "artifact<\(kind)>"
        case .download: "{url, sha256, files?}"
        case .array(let element): "[\(element)]"
        case .map(let element): "{string: \(element)}"
        case .oneOf(let types): types.map(\.description).joined(separator: " | ")
        case .enumeration(let cases): cases.map { "\"\($0)\"" }.joined(separator: " | ")
        case .any: "any"
        }
    }
}

/// How references inside a string parameter are substituted.
public enum ReferenceQuoting: Sendable, Hashable {
    /// As plain text.
    case none
    /// A /bin/sh script: each substituted value reaches it through an
    /// environment variable, never as script text (see `ShellScript`), so a
    /// parameter can never become shell syntax (`command`'s `run` with `shell: true`).
    case shell
}

/// One declared parameter of a stage type.
public struct ParameterSpec: Sendable, Hashable {
    public var name: String
    public var type: ParamType
    /// Required parameters have no default and must be written in the recipe.
    public var required: Bool
    public var defaultValue: Value?
    public var doc: String
    /// Applies to a plain string value of this parameter (not to list items).
    public var quoting: ReferenceQuoting
    /// A parameter added to an existing stage type whose default reproduces the
    /// old behaviour exactly: left out of the stage key while it equals that
    /// default, so adding it does not invalidate every cached stage of the type.
    /// Changing such a default must bump the stage type's version.
    public var keyedOnlyWhenChanged: Bool
    /// A parameter that cannot change the stage's output bits at any value
    /// (how often a training stage writes resumable checkpoints): never part
    /// of the stage key, so changing it never reruns the stage.
    public var outsideKey: Bool
    /// For a parameter that stands in for local files when they are missing
    /// (a download instead of `train`/`dev`/`test`), or nil.
    public var fallback: ParameterFallback?

    public init(
        _ name: String, _ type: ParamType, required: Bool = false, default defaultValue: Value? = nil,
        quoting: ReferenceQuoting = .none, keyedOnlyWhenChanged: Bool = false, outsideKey: Bool = false,
        fallback: ParameterFallback? = nil, doc: String
    ) {
        self.outsideKey = outsideKey
        self.fallback = fallback
        self.name = name
        self.type = type
        self.required = required
        self.defaultValue = defaultValue
        self.quoting = quoting
        self.keyedOnlyWhenChanged = keyedOnlyWhenChanged
        self.doc = doc
    }
}

/// A parameter that is a fallback for `path` parameters: when the recipe
/// gives both, the engine uses the path parameters if every file they name
/// exists, and the fallback (with its companions) otherwise. The set not
/// used is dropped before the key is made and before the stage runs, so a
/// recipe whose local files exist keeps the key it had without a fallback.
public struct ParameterFallback: Sendable, Hashable {
    /// The `path` (or list-of-path) parameters it stands in for.
    public var replaces: [String]
    /// Parameters that apply only together with the fallback (dropped when
    /// the local files are used).
    public var companions: [String]

    public init(replaces: [String], companions: [String] = []) {
        self.replaces = replaces
        self.companions = companions
    }
}

/// One declared output artifact of a stage type, referenced as `${stage.name}`.
public struct OutputSpec: Sendable, Hashable {
    public var name: String
    /// The artifact kind ("directory", "file", later "model", "dataset", …).
    public var kind: String
    public var doc: String

    public init(_ name: String, kind: String, doc: String) {
        self.name = name
        self.kind = kind
        self.doc = doc
    }
}

/// Whether a stage type's executions draw on the stage seed. Only those that
/// do key on it, so two recipes that differ only in `seed:` share the cache
/// entries of every stage that consumes no randomness.
public enum SeedUse: Sendable, Hashable {
    /// Every execution (training, sampling): the seed is part of the key.
    case always
    /// None (importing, converting): the seed is not part of the key.
    case never
    /// Only when the named parameter is given (a split drawn by the seed).
    case whenGiven(String)

    /// Whether a stage with these parameters draws on its seed.
    public func drawsSeed(_ parameters: OrderedDictionary<String, ParamValue>) -> Bool {
        switch self {
        case .always: true
        case .never: false
        case .whenGiven(let name): parameters[name].map { $0.kind != .null } ?? false
        }
    }
}

/// Everything the recipe layer needs to know about a stage type.
public struct StageTypeDescriptor: Sendable {
    /// The `uses:` value, e.g. `command` or `prune/cofi`.
    public var type: String
    /// Bumped when the stage's outputs change for the same inputs.
    public var version: Int
    public var summary: String
    public var parameters: [ParameterSpec]
    public var outputs: [OutputSpec]
    /// Extra checks beyond types (for example "`run` must be a list unless
    /// `shell: true`"), run on the stage's `with` mapping after type checking.
    /// Diagnostics should point at the offending node; those of severity
    /// `warning` are reported without failing validation.
    public var check: (@Sendable (_ with: YAMLNode) -> [Diagnostic])?
    /// What a stage of this type asks of the machine when its recipe entry
    /// has no `resources:` (tensor stages ask for all cores).
    public var defaultResources: Resources
    /// Whether the stage computes on the recipe's tensor backend; its cache
    /// key then holds the backend's numerics fingerprint, not just its name.
    public var usesTensorBackend: Bool
    /// Whether its executions draw on the stage seed (and so key on it).
    public var seedUse: SeedUse
    /// The content a string parameter's value stands for when its text does
    /// not pin what the stage will read (an unpinned model source), or nil:
    /// the key then holds that content's digest (and label) beside the text,
    /// and the stage finds where it is in `StageContext.keyedContent`, so it
    /// reads exactly what was keyed. It may fetch the content into a scratch
    /// directory of `scope`, and throws when the content cannot be found.
    public var keyedContent: (@Sendable (_ parameter: String, _ value: String, _ scope: KeyedContentScope) throws -> KeyedContent?)?
    /// An output the engine copies to a directory the user names in a
    /// parameter (an export's `destination`), after every run that satisfies
    /// the stage, computed or cached; nil for none.
    public var publication: Publication?

    public init(
        type: String, version: Int, summary: String,
        parameters: [ParameterSpec], outputs: [OutputSpec],
        defaultResources: Resources = Resources(),
        usesTensorBackend: Bool = false,
        seedUse: SeedUse = .always,
        keyedContent: (@Sendable (_ parameter: String, _ value: String, _ scope: KeyedContentScope) throws -> KeyedContent?)? = nil,
        publication: Publication? = nil,
        check: (@Sendable (_ with: YAMLNode) -> [Diagnostic])? = nil
    ) {
        self.publication = publication
        self.keyedContent = keyedContent
        self.defaultResources = defaultResources
        self.usesTensorBackend = usesTensorBackend
        self.seedUse = seedUse
        self.type = type
        self.version = version
        self.summary = summary
        self.parameters = parameters
        self.outputs = outputs
        self.check = check
    }

    public func parameter(named name: String) -> ParameterSpec? {
        parameters.first { $0.name == name }
    }

    public func output(named name: String) -> OutputSpec? {
        outputs.first { $0.name == name }
    }
}

/// A stage output that is also copied out of the cache to a directory named
/// by a string parameter (declared `outsideKey`: where a copy goes does not
/// change its bits). See `Pipeline.checkPublications` and `Publisher`.
public struct Publication: Sendable, Hashable {
    /// The parameter naming the directory, relative to the recipe's folder.
    public var parameter: String
    /// The output copied there (a directory output).
    public var output: String

    public init(parameter: String, output: String) {
        self.parameter = parameter
        self.output = output
    }
}

/// What an unpinned parameter value stands for when a key is made (see
/// `StageTypeDescriptor.keyedContent`).
public struct KeyedContent: Sendable, Hashable {
    /// The local file or directory whose content digest enters the key.
    public var path: String
    /// What was found, in a few words that enter the key and `squeeze plan`'s
    /// reasons (a fetched file's name, which names its version); nil for none.
    public var label: String?

    public init(path: String, label: String? = nil) {
        self.path = path
        self.label = label
    }
}

/// What a `keyedContent` hook may use while it looks for the content.
public struct KeyedContentScope: Sendable {
    /// The recipe's directory, where tools the hook runs should start.
    public var recipeDirectory: String
    /// A fresh empty directory for content the hook fetches. It lives until
    /// the stage whose key is being made has run (a plan drops it at its end),
    /// at the latest until the process ends.
    public var makeScratchDirectory: @Sendable () throws -> String

    public init(recipeDirectory: String, makeScratchDirectory: @escaping @Sendable () throws -> String) {
        self.recipeDirectory = recipeDirectory
        self.makeScratchDirectory = makeScratchDirectory
    }
}
