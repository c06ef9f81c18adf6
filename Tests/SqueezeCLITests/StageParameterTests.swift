import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeSupport
import Testing

/// Every built-in stage type decodes what validation lets through: its
/// defaults, and a representative value of every declared parameter type.
/// A parameter validated as one type and decoded as another would otherwise
/// fail only when the stage starts, possibly after hours of upstream work.
@Suite struct StageParameterTests {
    static let typeNames = BuiltinStages.registry(backends: .builtin).names

    /// Values of a recipe type as parameter resolution hands them to a stage.
    static func examples(of type: ParamType) -> [Value] {
        switch type {
        case .string: [.string("text")]
        case .int: [.int(2)]
        case .number: [.int(2), .double(0.5)]
        case .bool: [.bool(true), .bool(false)]
        case .path: [.string("/data/train.tsv")]
        case .artifact: [.string("/store/objects/artifact")]
        // As the run resolves it: the URL is there (only the key leaves it out); `files` is stage-specific.
        case .download: [.object(["url": .string("https://example.org/data.zip"), "sha256": .string(String(repeating: "a", count: 64))])]
        case .array(let element): [.array([])] + examples(of: element).map { .array([$0]) }
        case .map(let element): [.object([:])] + examples(of: element).map { .object(["key": $0]) }
        case .oneOf(let alternatives): alternatives.flatMap(examples(of:))
        case .enumeration(let cases): cases.map(Value.string)
        case .any: [.null, .string("text"), .int(2), .double(0.5), .bool(true)]
        }
    }

    /// Every parameter at its default, required ones at a representative
    /// value, optional ones left out: the smallest recipe `with:` that validates.
    static func defaults(of descriptor: StageTypeDescriptor) -> [String: Value] {
        var fields: [String: Value] = [:]
        for parameter in descriptor.parameters {
            if let value = parameter.defaultValue {
                fields[parameter.name] = value
            } else if parameter.required {
                fields[parameter.name] = examples(of: parameter.type).first
            }
        }
        return fields
    }

    static func stageType(_ name: String) throws -> StageType {
        try #require(BuiltinStages.registry(backends: .builtin)[name])
    }

    @Test(arguments: typeNames) func defaultsDecode(typeName: String) throws {
        let type = try Self.stageType(typeName)
        try type.decodeParameters(.object(Self.defaults(of: type.descriptor)))
    }

    /// Parameters whose stage `check` admits fewer values than their type,
    /// with what it admits: `checkpoint_every` is an integer or a string,
    /// but only `<N>m` among strings (`ResumeTests.checkpointEveryIsValidated`).
    static let checkedExamples: [String: [Value]] = ["checkpoint_every": [.int(200), .string("10m")]]

    @Test(arguments: typeNames) func everyDeclaredTypeDecodes(typeName: String) throws {
        let type = try Self.stageType(typeName)
        let defaults = Self.defaults(of: type.descriptor)
        for parameter in type.descriptor.parameters {
            for example in Self.checkedExamples[parameter.name] ?? Self.examples(of: parameter.type) {
                var fields = defaults
                fields[parameter.name] = example
                #expect(throws: Never.self, "`\(parameter.name)` (\(parameter.type)) = \(example.canonicalJSON)") {
                    try type.decodeParameters(.object(fields))
                }
            }
        }
    }

    /// A value no declared type admits fails the decoding, naming the
    /// parameter: every declared parameter is read by the stage.
    @Test(arguments: typeNames) func everyParameterIsRead(typeName: String) throws {
        let type = try Self.stageType(typeName)
        let defaults = Self.defaults(of: type.descriptor)
        let unfit = Value.array([.object([:]), .int(1), .string("text")])
        for parameter in type.descriptor.parameters {
            var fields = defaults
            fields[parameter.name] = unfit
            let failure = #expect(throws: StageFailure.self, "`\(parameter.name)`") {
                try type.decodeParameters(.object(fields))
            }
            #expect(failure?.message.contains("parameter `\(parameter.name)`") == true, "\(String(describing: failure))")
        }
    }

    /// The check above catches a declaration whose recipe type admits values
    /// its Swift type cannot decode.
    @Test func aNumberDeclaredForAnIntegerIsCaught() throws {
        let type = StageType(MisdeclaredStage())
        let defaults = Self.defaults(of: type.descriptor)
        let failures = Self.examples(of: .number).filter { example in
            var fields = defaults
            fields["count"] = example
            return (try? type.decodeParameters(.object(fields))) == nil
        }
        #expect(failures == [.double(0.5)])
    }

    @Test func readingAnUndeclaredParameterFails() throws {
        let arguments = StageArguments(["count": .int(1)], declared: [])
        #expect(throws: ParameterDecodingError.self) { try arguments[MisdeclaredStage.Params.count] }
    }

    @Test func optionalParametersAreNilAndDefaultsApplyWhenLeftOut() throws {
        let optional = Parameter("steps", .optional(.int), doc: "steps")
        let defaulted = Parameter("lr", .number, default: 5e-5, doc: "lr")
        let arguments = StageArguments([:], declared: [optional.spec, defaulted.spec])
        #expect(try arguments[optional] == nil)
        #expect(try arguments[defaulted] == 5e-5)
        #expect(!optional.spec.required && optional.spec.defaultValue == nil)
        #expect(defaulted.spec.defaultValue == .double(5e-5))
    }
}

/// A stage whose `count` is validated as any number but decoded as an integer.
private struct MisdeclaredStage: Stage {
    struct Params: StageParameters {
        static let count = Parameter("count", ParameterType(.number, decodedAs: Int.self), doc: "A count.")
        static let parameters: [any ParameterDeclaration] = [count]
        var count: Int

        init(_ arguments: StageArguments) throws {
            count = try arguments[Self.count]
        }
    }

    static let descriptor = StageTypeDescriptor(
        type: "test/misdeclared", version: 1, summary: "A misdeclared parameter.", parameters: Params.specs, outputs: [])

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult { StageResult() }
}
