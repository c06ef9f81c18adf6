import Foundation
import SqueezeYAML
import Testing

/// Parses `text`, requiring success.
func parse(_ text: String, limits: YAMLLimits = .default, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> YAMLNode {
    try #require(try YAMLParser.parse(text, file: "r.yaml", limits: limits), sourceLocation: sourceLocation)
}

/// The diagnostic parsing `bytes` produces, or nil if it parses.
func parseError(_ bytes: [UInt8], limits: YAMLLimits = .default) -> Diagnostic? {
    do {
        _ = try YAMLParser.parse(bytes, file: "r.yaml", limits: limits)
        return nil
    } catch {
        return error
    }
}

func parseError(_ text: String, limits: YAMLLimits = .default) -> Diagnostic? {
    parseError(Array(text.utf8), limits: limits)
}

/// Expects parsing to fail at `line:column` with a message containing `fragment`.
func expectError(
    _ text: String, at line: Int, _ column: Int, _ fragment: String, hint: String? = nil,
    limits: YAMLLimits = .default, sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    expectError(Array(text.utf8), at: line, column, fragment, hint: hint, limits: limits, sourceLocation: sourceLocation)
}

func expectError(
    _ bytes: [UInt8], at line: Int, _ column: Int, _ fragment: String, hint: String? = nil,
    limits: YAMLLimits = .default, sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    guard let error = parseError(bytes, limits: limits) else {
        Issue.record("expected an error containing \"\(fragment)\"", sourceLocation: sourceLocation)
        return
    }
    #expect(error.location == SqueezeYAML.SourceLocation(file: "r.yaml", line: line, column: column), "\(error)", sourceLocation: sourceLocation)
    #expect(error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
    if let hint {
        #expect(error.hint?.contains(hint) == true, "\(error)", sourceLocation: sourceLocation)
    }
}

/// `line:column` of a node, for compact assertions.
func position(_ node: YAMLNode?) -> String {
    node.map { "\($0.location.line):\($0.location.column)" } ?? "missing"
}

/// Scratch files for `parseFile` tests, under a unique temporary directory.
enum TemporaryFile {
    static func makeDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-yaml-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    static func write(_ text: String) throws -> String {
        try write(Data(text.utf8))
    }

    static func write(_ data: Data) throws -> String {
        let path = try makeDirectory() + "/recipe.yaml"
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Removes a file's scratch directory (or the directory itself).
    static func remove(_ path: String) {
        let directory = path.hasSuffix(".yaml") ? (path as NSString).deletingLastPathComponent : path
        try? FileManager.default.removeItem(atPath: directory)
    }
}
