import SqueezeSupport
/// A `ParamType` together with the Swift type its values decode to.
///
/// The built-in constructors pair each recipe type with the one Swift type
/// that decodes every value it admits (`.number` with `Double`, `.int` with
/// `Int`, `.path` with `String`, …), so a parameter validated as one type can
/// never be decoded as another: `Parameter("epochs", .number, …)` is a
/// `Parameter<Double>`, and assigning it to an `Int` field does not compile.
public struct ParameterType<Decoded: Decodable & Sendable>: Sendable {
    public let type: ParamType
    /// What the stage gets when the recipe leaves the parameter out and it
    /// has no default: `.some(nil)` for an optional type, nil otherwise
    /// (the parameter is then required).
    let absent: Decoded?

    /// A recipe type decoded as a stage-specific Swift type (a mapping into a
    /// struct, a `oneOf` into an enum). Nothing but a test can tie the two:
    /// the stage parameter tests decode a representative value of every
    /// declared type.
    public init(_ type: ParamType, decodedAs: Decoded.Type = Decoded.self) {
        self.init(type, absent: nil)
    }

    private init(_ type: ParamType, absent: Decoded?) {
        self.type = type
        self.absent = absent
    }

    /// The same type, which the recipe may leave out; the stage then gets nil.
    public static func optional<Wrapped>(_ wrapped: ParameterType<Wrapped>) -> Self where Decoded == Wrapped? {
        Self(wrapped.type, absent: .some(nil))
    }

    public static func array<Element>(_ element: ParameterType<Element>) -> Self where Decoded == [Element] {
        Self(.array(element.type))
    }

    /// A mapping with string keys and values of one type.
    public static func map<Element>(_ element: ParameterType<Element>) -> Self where Decoded == [String: Element] {
        Self(.map(element.type))
    }

    /// A mapping decoded into `Decoded`, whose keys and values the stage's
    /// `check` validates.
    public static func mapping(_ decoded: Decoded.Type) -> Self { Self(.map(.any)) }

    /// A pinned download (`{url, sha256, files?}`) decoded into `Decoded`;
    /// the stage's `check` validates the shape of `files`.
    public static func download(_ decoded: Decoded.Type) -> Self { Self(.download) }
}

extension ParameterType where Decoded == String {
    public static var string: Self { Self(.string) }
    /// A file or directory, keyed by its content; the stage gets its absolute path.
    public static var path: Self { Self(.path) }
    /// A reference to an upstream output of this kind; the stage gets its path.
    public static func artifact(_ kind: String) -> Self { Self(.artifact(kind)) }
    public static func enumeration(_ cases: [String]) -> Self { Self(.enumeration(cases)) }
}

extension ParameterType where Decoded == Int {
    public static var int: Self { Self(.int) }
}

extension ParameterType where Decoded == Double {
    /// Integers are accepted and widened.
    public static var number: Self { Self(.number) }
}

extension ParameterType where Decoded == Bool {
    public static var bool: Self { Self(.bool) }
}

/// A Swift value that can be written as a parameter's default.
public protocol ParameterValue: Decodable, Sendable {
    /// The value as the recipe would write it (what the schema, `squeeze
    /// stages` and the cache key see).
    var parameterValue: Value { get }
}

extension String: ParameterValue {
    public var parameterValue: Value { .string(self) }
}

extension Int: ParameterValue {
    public var parameterValue: Value { .int(self) }
}

extension Double: ParameterValue {
    public var parameterValue: Value { .double(self) }
}

extension Bool: ParameterValue {
    public var parameterValue: Value { .bool(self) }
}

extension Array: ParameterValue where Element: ParameterValue {
    public var parameterValue: Value { .array(map(\.parameterValue)) }
}

extension Dictionary: ParameterValue where Key == String, Value: ParameterValue {
    public var parameterValue: SqueezeSupport.Value { .object(mapValues(\.parameterValue)) }
}

/// One parameter of a stage type, declared once: its name, type, default and
/// documentation. The `ParameterSpec` that validation, `squeeze stages` and
/// the JSON Schema read is derived from it, and the stage reads its value
/// through it (`try arguments[Params.lr]`), decoded as the same type.
public struct Parameter<Decoded: Decodable & Sendable>: Sendable {
    public private(set) var spec: ParameterSpec
    /// What the stage gets when the recipe leaves the parameter out, or nil
    /// when it is required.
    let absent: Decoded?

    /// A parameter with a default. `keyedOnlyWhenChanged` and `outsideKey`:
    /// see `ParameterSpec`.
    public init(
        _ name: String, _ type: ParameterType<Decoded>, default defaultValue: Decoded, keyedOnlyWhenChanged: Bool = false,
        outsideKey: Bool = false, doc: String
    ) where Decoded: ParameterValue {
        spec = ParameterSpec(
            name, type.type, default: defaultValue.parameterValue, keyedOnlyWhenChanged: keyedOnlyWhenChanged,
            outsideKey: outsideKey, doc: doc)
        absent = defaultValue
    }

    /// A parameter without a default: required, unless its type is `.optional(…)`.
    public init(
        _ name: String, _ type: ParameterType<Decoded>, quoting: ReferenceQuoting = .none, fallback: ParameterFallback? = nil,
        outsideKey: Bool = false, doc: String
    ) {
        spec = ParameterSpec(
            name, type.type, required: type.absent == nil, quoting: quoting, outsideKey: outsideKey, fallback: fallback, doc: doc)
        absent = type.absent
    }

    /// The same parameter with another documentation (for a stage that gives
    /// a shared parameter a more specific meaning).
    public func documented(_ doc: String) -> Self {
        var copy = self
        copy.spec.doc = doc
        return copy
    }
}

extension Parameter where Decoded: ParameterValue {
    /// The same parameter with another default.
    public func defaulting(to defaultValue: Decoded) -> Self {
        Self(
            spec.name, ParameterType(spec.type), default: defaultValue, keyedOnlyWhenChanged: spec.keyedOnlyWhenChanged,
            outsideKey: spec.outsideKey, doc: spec.doc)
    }
}

/// A parameter as a stage type's table lists it.
public protocol ParameterDeclaration: Sendable {
    var spec: ParameterSpec { get }
}

extension Parameter: ParameterDeclaration {}

/// The typed parameters of a stage type: a table of declarations, and an
/// initializer that reads each of them from the resolved arguments.
///
/// Decoding goes through the declarations only: reading a parameter the
/// table does not declare (or declares differently) is an error, so the
/// table, the validation and the decoding cannot drift apart.
public protocol StageParameters: Decodable, Sendable {
    /// Every parameter, in the order `squeeze stages` lists them.
    static var parameters: [any ParameterDeclaration] { get }
    init(_ arguments: StageArguments) throws
}

extension StageParameters {
    /// The specs of `parameters`, for the stage type's descriptor.
    public static var specs: [ParameterSpec] { parameters.map(\.spec) }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.singleValueContainer().decode([String: Value].self)
        try self.init(StageArguments(values, declared: Self.specs))
    }
}

/// A parameter's resolved value could not be read as its declared type.
public struct ParameterDecodingError: Error, Sendable, CustomStringConvertible {
    public var parameter: String
    public var reason: String
    public var description: String { "parameter `\(parameter)`: \(reason)" }
}

/// The resolved arguments of one stage execution, read through declarations.
public struct StageArguments: Sendable {
    private let values: [String: Value]
    private let declared: [String: ParameterSpec]

    public init(_ values: [String: Value], declared: [ParameterSpec]) {
        self.values = values
        self.declared = Dictionary(declared.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// For options shared by several stage types that not all of them take
    /// (`max_seq_len` of the classification trainers): the value when the
    /// stage declares `parameter`, else its default.
    public subscript<Decoded>(ifDeclared parameter: Parameter<Decoded>) -> Decoded {
        get throws(ParameterDecodingError) {
            if declared[parameter.spec.name] == nil, let absent = parameter.absent { return absent }
            return try self[parameter]
        }
    }

    /// The value of `parameter`: the written or default value decoded as its
    /// declared type, or nil for an optional parameter left out.
    public subscript<Decoded>(_ parameter: Parameter<Decoded>) -> Decoded {
        get throws(ParameterDecodingError) {
            let name = parameter.spec.name
            guard declared[name] == parameter.spec else {
                throw ParameterDecodingError(parameter: name, reason: "not declared by the stage type")
            }
            guard let value = values[name] else {
                if let absent = parameter.absent { return absent }
                throw ParameterDecodingError(parameter: name, reason: "missing")
            }
            do {
                return try value.decode(Decoded.self)
            } catch {
                throw ParameterDecodingError(
                    parameter: name, reason: "\(value.typeName) could not be read as \(ParamTypeChecker.phrase(for: parameter.spec.type)): \(error)")
            }
        }
    }
}
