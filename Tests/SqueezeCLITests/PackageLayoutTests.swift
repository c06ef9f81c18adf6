import Foundation
import Testing

/// Package.swift and the sources agree: every target declares exactly the
/// project modules and package products it imports, every source directory is
/// a target, and the layering holds (the engine knows no tensors, the tensor
/// library no recipes, the store neither).
@Suite struct PackageLayoutTests {
    /// Modules the recipe side (engine, recipe language, YAML) must never reach.
    static let numericModules: Set<String> = [
        "CKernels", "SqueezeTensor", "SqueezeModels", "SqueezeCompress", "SqueezeExport", "SqueezeONNXProto",
    ]
    /// Modules the tensor library must never reach.
    static let recipeModules: Set<String> = ["SqueezeYAML", "SqueezeRecipe", "SqueezeEngine", "SqueezeStages", "SqueezeReport"]

    static func layout() throws -> PackageLayout {
        try PackageLayout(repository: Corpus.repository)
    }

    @Test func importsMatchDeclaredDependencies() throws {
        let layout = try Self.layout()
        let problems = layout.dependencyProblems()
        #expect(problems.isEmpty, "Package.swift and the imports disagree:\n\(problems.joined(separator: "\n"))")
    }

    @Test func everySourceDirectoryIsATarget() throws {
        let layout = try Self.layout()
        let repository = Corpus.repository
        var directories: Set<String> = []
        for top in ["Sources", "Tests"] {
            let names = try FileManager.default.contentsOfDirectory(atPath: repository.appendingPathComponent(top).path)
            for name in names where PackageLayout.isDirectory(repository.appendingPathComponent(top).appendingPathComponent(name)) {
                directories.insert(top + "/" + name)
            }
        }
        let targetPaths = Set(layout.targets.map(\.path))
        #expect(directories.subtracting(targetPaths).isEmpty, "directories no target builds: \(directories.subtracting(targetPaths).sorted())")
        #expect(targetPaths.subtracting(directories).isEmpty, "targets without a directory: \(targetPaths.subtracting(directories).sorted())")
    }

    @Test func recipeSideKnowsNoTensors() throws {
        let layout = try Self.layout()
        for target in ["SqueezeEngine", "SqueezeStore", "SqueezeRecipe", "SqueezeYAML", "SqueezeSupport"] {
            let reached = layout.reachableTargets(from: target).intersection(Self.numericModules)
            #expect(reached.isEmpty, "\(target) reaches \(reached.sorted())")
            let imported = layout.imports[target, default: []].intersection(Self.numericModules)
            #expect(imported.isEmpty, "\(target) imports \(imported.sorted())")
        }
    }

    @Test func tensorLibraryKnowsNoRecipes() throws {
        let layout = try Self.layout()
        let reached = layout.reachableTargets(from: "SqueezeTensor").intersection(Self.recipeModules)
        #expect(reached.isEmpty, "SqueezeTensor reaches \(reached.sorted())")
        let imported = layout.imports["SqueezeTensor", default: []].intersection(Self.recipeModules)
        #expect(imported.isEmpty, "SqueezeTensor imports \(imported.sorted())")
    }

    /// The store keeps bytes, trees and stage entries; it knows no recipe,
    /// YAML, engine, stage, report or tensor module, only the leaf.
    @Test func storeKnowsNoRecipesNorTensors() throws {
        let layout = try Self.layout()
        let forbidden = Self.recipeModules.union(Self.numericModules)
        let reached = layout.reachableTargets(from: "SqueezeStore").intersection(forbidden)
        #expect(reached.isEmpty, "SqueezeStore reaches \(reached.sorted())")
        let imported = layout.imports["SqueezeStore", default: []].intersection(forbidden)
        #expect(imported.isEmpty, "SqueezeStore imports \(imported.sorted())")
        #expect(layout.reachableTargets(from: "SqueezeEngine").contains("SqueezeStore"))
    }

    /// The leaf stands on nothing of the project but its C helper.
    @Test func supportIsALeaf() throws {
        let layout = try Self.layout()
        let project = Set(layout.targets.filter { $0.kind != .test }.map(\.name))
        #expect(layout.reachableTargets(from: "SqueezeSupport").intersection(project) == ["CProcessSupport"])
    }

    @Test func modelsKnowNoCompressionAlgorithms() throws {
        let layout = try Self.layout()
        #expect(!layout.reachableTargets(from: "SqueezeModels").contains("SqueezeCompress"))
        #expect(!layout.imports["SqueezeModels", default: []].contains("SqueezeCompress"))
    }

    /// The checker itself: a manifest whose targets import one module too
    /// many and declare one too many is reported on both counts.
    @Test func checkerReportsUndeclaredAndUnusedDependencies() throws {
        let manifest = #"""
            let package = Package(
                name: "sample",
                targets: [
                    .target(name: "Low", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
                    .target(name: "High", dependencies: ["Low"], path: "Sources/HighSources"),
                    .executableTarget(name: "tool", dependencies: ["High"]),
                    .testTarget(name: "HighTests", dependencies: ["tool", "High", "Low"]),
                ]
            )
            """#
        let targets = try PackageLayout.targets(inManifest: manifest)
        #expect(targets.map(\.name) == ["Low", "High", "tool", "HighTests"])
        #expect(targets[1].path == "Sources/HighSources")
        #expect(targets[3].path == "Tests/HighTests")
        let imports: [String: Set<String>] = [
            "Low": ["Foundation", "Crypto"],
            "High": ["Low", "Crypto"],
            "tool": ["High"],
            "HighTests": ["High", "Testing"],
        ]
        let layout = PackageLayout(targets: targets, imports: imports)
        #expect(
            layout.dependencyProblems() == [
                "High imports Crypto but does not declare it",
                "HighTests declares Low but never imports it",
            ])
        #expect(layout.reachableTargets(from: "tool") == ["High", "Low"])
    }

    @Test func importsAreReadFromCodeOnly() {
        let source = #"""
            @preconcurrency import Dispatch
            #if canImport(Glibc)
            import Glibc
            #endif
            @testable import Alpha
            public import struct Beta.Gamma
            // import Commented
            let script = """
            import json
            """
            """#
        #expect(PackageLayout.imports(inSwiftSource: source) == ["Dispatch", "Glibc", "Alpha", "Beta"])
    }
}

/// The targets of Package.swift (read as text) and the modules their Swift
/// sources import.
struct PackageLayout {
    struct Target: Hashable {
        enum Kind: String, CaseIterable {
            case regular = "target", executable = "executableTarget", test = "testTarget", system = "systemLibrary"
        }

        let name: String
        let kind: Kind
        /// Declared dependencies: target and product names.
        let dependencies: Set<String>
        /// The source directory, relative to the package root.
        let path: String
        /// Product names among `dependencies`.
        let products: Set<String>
    }

    struct ManifestError: Error, CustomStringConvertible {
        let description: String
    }

    let targets: [Target]
    /// Every module each target's Swift sources import, by target name.
    let imports: [String: Set<String>]

    init(targets: [Target], imports: [String: Set<String>]) {
        self.targets = targets
        self.imports = imports
    }

    init(repository: URL) throws {
        let manifest = try String(contentsOf: repository.appendingPathComponent("Package.swift"), encoding: .utf8)
        let targets = try Self.targets(inManifest: manifest)
        var imports: [String: Set<String>] = [:]
        for target in targets {
            var modules: Set<String> = []
            for file in Self.swiftFiles(under: repository.appendingPathComponent(target.path)) {
                modules.formUnion(Self.imports(inSwiftSource: try String(contentsOf: file, encoding: .utf8)))
            }
            imports[target.name] = modules
        }
        self.init(targets: targets, imports: imports)
    }

    /// Modules that count: the package's own library, executable and system
    /// targets and the products it uses. Others (Foundation, Glibc, Testing…)
    /// are the toolchain's.
    var knownModules: Set<String> {
        Set(targets.filter { $0.kind != .test }.map(\.name)).union(targets.flatMap(\.products))
    }

    /// One line per disagreement: a known module imported but not declared,
    /// or a dependency declared but never imported. An executable target
    /// need not be imported: tests depend on it to have it built and run it.
    func dependencyProblems() -> [String] {
        let known = knownModules
        let kinds = Dictionary(targets.map { ($0.name, $0.kind) }, uniquingKeysWith: { first, _ in first })
        var problems: [String] = []
        for target in targets where target.kind != .system {
            let imported = imports[target.name, default: []].intersection(known).subtracting([target.name])
            for module in imported.subtracting(target.dependencies).sorted() {
                problems.append("\(target.name) imports \(module) but does not declare it")
            }
            for dependency in target.dependencies.subtracting(imported).sorted() where kinds[dependency] != .executable {
                problems.append("\(target.name) declares \(dependency) but never imports it")
            }
        }
        return problems
    }

    /// Every target reachable from `name` through declared dependencies.
    func reachableTargets(from name: String) -> Set<String> {
        let byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var reached: Set<String> = []
        var pending = Array(byName[name]?.dependencies ?? [])
        while let next = pending.popLast() {
            guard byName[next] != nil, reached.insert(next).inserted else { continue }
            pending.append(contentsOf: byName[next]?.dependencies ?? [])
        }
        return reached
    }

    // MARK: Reading Package.swift

    /// The targets of a manifest, in order: each `.target(…)`,
    /// `.executableTarget(…)`, `.testTarget(…)` and `.systemLibrary(…)` with
    /// its name, its `dependencies` (string literals and the `name:` of
    /// `.product`/`.target`/`.byName` entries) and its `path` (by default
    /// Tests/NAME for a test target, Sources/NAME otherwise).
    static func targets(inManifest manifest: String) throws -> [Target] {
        let text = Array(manifest.unicodeScalars)
        var targets: [Target] = []
        var index = 0
        while let (kind, open) = nextTargetCall(in: text, from: index) {
            let close = try matchingClose(in: text, open: open)
            let arguments = String(String.UnicodeScalarView(text[(open + 1)..<close]))
            guard let name = firstString(labelled: "name", in: arguments) else {
                throw ManifestError(description: "a .\(kind.rawValue)(…) without a name: \(arguments.prefix(80))")
            }
            var dependencies: Set<String> = []
            var products: Set<String> = []
            if let list = try bracketed(after: "dependencies:", in: arguments) {
                for (label, value) in stringLiterals(in: list) where label == nil || label == "name" {
                    dependencies.insert(value)
                }
                products = Set(productNames(in: list))
            }
            let path = firstString(labelled: "path", in: arguments) ?? (kind == .test ? "Tests/" : "Sources/") + name
            targets.append(Target(name: name, kind: kind, dependencies: dependencies, path: path, products: products))
            index = close + 1
        }
        return targets
    }

    /// The next `.KIND(` at or after `start`, with the index of its `(`.
    private static func nextTargetCall(in text: [Unicode.Scalar], from start: Int) -> (Target.Kind, Int)? {
        var best: (Target.Kind, Int)?
        let string = String(String.UnicodeScalarView(text[start...]))
        for kind in Target.Kind.allCases {
            guard let range = string.range(of: "." + kind.rawValue + "(") else { continue }
            let offset = string.unicodeScalars.distance(from: string.unicodeScalars.startIndex, to: range.upperBound) - 1
            if best == nil || start + offset < best?.1 ?? .max { best = (kind, start + offset) }
        }
        return best
    }

    /// The index of the bracket closing the one at `open`, skipping string
    /// literals and `//` comments.
    private static func matchingClose(in text: [Unicode.Scalar], open: Int) throws -> Int {
        let pairs: [Unicode.Scalar: Unicode.Scalar] = ["(": ")", "[": "]"]
        var stack: [Unicode.Scalar] = []
        var index = open
        var inString = false
        while index < text.count {
            let scalar = text[index]
            if inString {
                if scalar == "\\" { index += 1 } else if scalar == "\"" { inString = false }
            } else if scalar == "\"" {
                inString = true
            } else if scalar == "/", index + 1 < text.count, text[index + 1] == "/" {
                while index < text.count, text[index] != "\n" { index += 1 }
            } else if let close = pairs[scalar] {
                stack.append(close)
            } else if scalar == ")" || scalar == "]" {
                guard stack.popLast() == scalar else { throw ManifestError(description: "unbalanced \(scalar) at \(index)") }
                if stack.isEmpty { return index }
            }
            index += 1
        }
        throw ManifestError(description: "unclosed bracket at \(open)")
    }

    /// The contents of the `[…]` following `label`, if `label` occurs.
    private static func bracketed(after label: String, in text: String) throws -> String? {
        guard let range = text.range(of: label) else { return nil }
        let rest = Array(text[range.upperBound...].unicodeScalars)
        guard let open = rest.firstIndex(where: { !$0.properties.isWhitespace }), rest[open] == "[" else {
            throw ManifestError(description: "`\(label)` is not followed by a list literal")
        }
        let close = try matchingClose(in: rest, open: open)
        return String(String.UnicodeScalarView(rest[(open + 1)..<close]))
    }

    /// Every string literal of `text` with the argument label before it, if any.
    private static func stringLiterals(in text: String) -> [(label: String?, value: String)] {
        text.matches(of: #/(?:(\w+)\s*:\s*)?"([^"\\]*)"/#).map { match in
            (match.output.1.map(String.init), String(match.output.2))
        }
    }

    private static func firstString(labelled label: String, in text: String) -> String? {
        stringLiterals(in: text).first { $0.label == label }?.value
    }

    private static func productNames(in text: String) -> [String] {
        text.matches(of: #/\.product\(\s*name\s*:\s*"([^"\\]*)"/#).map { String($0.output.1) }
    }

    // MARK: Reading Swift sources

    /// The modules `source` imports: `import M`, `@testable import M`,
    /// `public import struct M.T` and the like, inside `#if` blocks too, but
    /// not in comments or multi-line string literals.
    static func imports(inSwiftSource source: String) -> Set<String> {
        let pattern =
            #/^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_][A-Za-z0-9_]*)/#
        let multilineDelimiter = String(repeating: "\"", count: 3)
        var modules: Set<String> = []
        var inMultilineString = false
        for line in source.split(separator: "\n", omittingEmptySubsequences: false) {
            let delimiters = line.ranges(of: multilineDelimiter).count
            if !inMultilineString, delimiters == 0, let match = line.firstMatch(of: pattern) {
                modules.insert(String(match.output.1))
            }
            if delimiters % 2 == 1 { inMultilineString.toggle() }
        }
        return modules
    }

    static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    static func swiftFiles(under directory: URL) -> [URL] {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        return enumerator.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
    }
}
