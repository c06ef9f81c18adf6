import Collections
import Foundation
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport
import SqueezeYAML

/// Turns a stage's written parameters into the two things the engine needs:
/// the values the stage runs with, and the values its cache key is built from.
///
/// The two differ on purpose: a stage runs with real paths, but its key holds
/// content digests, so moving the cache or pointing `${env.DATA}` at another
/// copy of the same files changes nothing.
struct ParameterResolver {
    /// What `${stage.output}` stands for in each mode.
    var upstream: [Reference: UpstreamOutput]
    var environment: [String: String]
    var recipeDirectory: String
    var outputDirectory: String
    var seed: UInt64
    /// Hashes a file or directory a `path` parameter names.
    var digestOfPath: (String) throws -> ArtifactRef
    /// Handed to a stage type's `keyedContent` hook when a key is made.
    var keyedContentScope: KeyedContentScope

    struct UpstreamOutput {
        var ref: ArtifactRef
        /// Where the artifact can be read (nil while only planning).
        var path: String?
    }

    enum Mode {
        case run
        case key
    }

    struct ResolutionError: Error, CustomStringConvertible {
        var description: String
    }

    /// The parameters a key is made from, and where the content that keys
    /// an unpinned parameter was found (by parameter name), for the run.
    struct KeyParameters {
        var params: Value
        var keyedContent: [String: String]
    }

    /// Resolves every declared parameter of `spec` for `mode`.
    func resolve(_ spec: StageSpec, descriptor: StageTypeDescriptor, mode: Mode) throws -> Value {
        var located: [String: String] = [:]
        return try resolve(spec, descriptor: descriptor, mode: mode, keyedContent: &located)
    }

    /// Resolves every declared parameter of `spec` for its key. A parameter
    /// the stage type's `keyedContent` hook resolves is keyed as
    /// `TEXT@DIGEST` or `TEXT@LABEL@DIGEST` (the content's digest last).
    func resolveForKey(_ spec: StageSpec, descriptor: StageTypeDescriptor) throws -> KeyParameters {
        var located: [String: String] = [:]
        let params = try resolve(spec, descriptor: descriptor, mode: .key, keyedContent: &located)
        return KeyParameters(params: params, keyedContent: located)
    }

    private func resolve(
        _ spec: StageSpec, descriptor: StageTypeDescriptor, mode: Mode, keyedContent located: inout [String: String]
    ) throws -> Value {
        var fields: [String: Value] = [:]
        for (name, value) in selectedParameters(spec, descriptor: descriptor) {
            let parameter = descriptor.parameter(named: name)
            if parameter?.quoting == .shell, case .string(let template) = value.kind {
                fields[name] = try shellScript(template, mode: mode)
            } else {
                fields[name] = try resolve(value, as: parameter?.type ?? .any, mode: mode, path: name)
            }
            if mode == .key, let keyedContent = descriptor.keyedContent, case .string(let text)? = fields[name],
               let content = try keyedContent(name, text, keyedContentScope) {
                let digest = try digestOfPath(content.path).digest.description
                fields[name] = .string(([text] + (content.label.map { [$0] } ?? []) + [digest]).joined(separator: "@"))
                located[name] = content.path
            }
        }
        return .object(fields)
    }

    /// The written parameters the stage runs with: where a parameter is a
    /// fallback for path parameters (`ParameterSpec.fallback`) and the recipe
    /// gives both, the path parameters when every file they name exists
    /// (the fallback and its companions dropped), else the fallback (the path
    /// parameters dropped). Key, seed use and run all read this selection.
    func selectedParameters(_ spec: StageSpec, descriptor: StageTypeDescriptor) -> OrderedDictionary<String, ParamValue> {
        var with = spec.with
        for parameter in descriptor.parameters {
            guard let fallback = parameter.fallback, with[parameter.name] != nil else { continue }
            let given = fallback.replaces.compactMap { with[$0] }
            guard !given.isEmpty else { continue }
            if given.allSatisfy(localFilesExist) {
                with[parameter.name] = nil
                for companion in fallback.companions { with[companion] = nil }
            } else {
                for name in fallback.replaces { with[name] = nil }
            }
        }
        return with
    }

    /// Whether every file a path value (or list of them) names exists now; a
    /// stage output always does, an unset environment variable never.
    private func localFilesExist(_ value: ParamValue) -> Bool {
        switch value.kind {
        case .string(let template):
            if template.references.contains(where: { if case .stageOutput = $0 { true } else { false } }) { return true }
            guard let text = try? template.render({ try render($0, mode: .run) }) else { return false }
            return FileManager.default.fileExists(atPath: Self.absolute(text, relativeTo: recipeDirectory))
        case .array(let items):
            return items.allSatisfy(localFilesExist)
        default:
            return true
        }
    }

    /// A shell script parameter, with the values it reads from the environment.
    private func shellScript(_ template: Template, mode: Mode) throws -> Value {
        do {
            return try ShellScript(template) { try render($0, mode: mode) }.parameterValue
        } catch let refusal as ShellScript.Refusal {
            throw ResolutionError(description: refusal.description)
        }
    }

    private func resolve(_ value: ParamValue, as type: ParamType, mode: Mode, path: String) throws -> Value {
        switch (value.kind, type) {
        case (.array(let items), .array(let element)):
            return .array(try items.enumerated().map { try resolve($1, as: element, mode: mode, path: "\(path)[\($0)]") })
        case (.object(let fields), .map(let element)):
            var out: [String: Value] = [:]
            for (key, field) in fields { out[key] = try resolve(field, as: element, mode: mode, path: "\(path).\(key)") }
            return .object(out)
        case (_, .oneOf(let alternatives)):
            let chosen = alternatives.first { Self.fits(value, $0) } ?? .any
            return try resolve(value, as: chosen, mode: mode, path: path)
        case (.string(let template), .path):
            return try resolvePath(template, mode: mode, parameter: path, at: value.location)
        case (.object(let fields), .download):
            // The pin keys a download, never the URL: a mirror with the same bytes is a hit.
            var out: [String: Value] = [:]
            for (key, field) in fields where !(mode == .key && key == "url") {
                out[key] = try field.resolve { try render($0, mode: mode) }
            }
            return .object(out)
        default:
            return try value.resolve { try render($0, mode: mode) }
        }
    }

    /// Whether a written value has the shape of `type` (for picking a `oneOf` branch).
    static func fits(_ value: ParamValue, _ type: ParamType) -> Bool {
        switch (value.kind, type) {
        case (_, .any): true
        case (.array, .array), (.object, .map), (.object, .download): true
        case (.string, .string), (.string, .path), (.string, .artifact), (.string, .enumeration): true
        case (.int, .int), (.int, .number), (.double, .number), (.bool, .bool), (.null, _): true
        case (_, .oneOf(let alternatives)): alternatives.contains { fits(value, $0) }
        default: false
        }
    }

    /// A `path` parameter: the real absolute path to run with, or its content digest for the key.
    private func resolvePath(_ template: Template, mode: Mode, parameter: String, at location: SourceLocation) throws -> Value {
        let text = try template.render { try render($0, mode: .run) }
        let absolute = Self.absolute(text, relativeTo: recipeDirectory)
        switch mode {
        case .run:
            return .string(absolute)
        case .key:
            guard FileManager.default.fileExists(atPath: absolute) else {
                throw ResolutionError(description: "\(location): input `\(parameter)` does not exist: \(absolute)")
            }
            return .string(try digestOfPath(absolute).digest.description)
        }
    }

    private func render(_ reference: Reference, mode: Mode) throws -> String {
        switch reference {
        case .stageOutput:
            guard let output = upstream[reference] else {
                throw ResolutionError(description: "\(reference) is not available")
            }
            switch mode {
            case .key: return output.ref.digest.description
            case .run:
                guard let path = output.path else {
                    throw ResolutionError(description: "\(reference) has not been produced yet")
                }
                return path
            }
        case .environment(let name, let fallback):
            switch mode {
            // Environment values enter the key only through the content they point to.
            case .key: return reference.description
            case .run:
                if let value = environment[name] ?? fallback { return value }
                throw ResolutionError(description: "environment variable `\(name)` is not set")
            }
        case .outputDirectory:
            return mode == .key ? reference.description : outputDirectory
        case .seed:
            return String(seed)
        }
    }

    static func absolute(_ path: String, relativeTo directory: String) -> String {
        let joined = path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        return (joined as NSString).standardizingPath
    }
}
