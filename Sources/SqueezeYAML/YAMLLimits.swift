/// Resource limits applied while reading a YAML document.
///
/// Recipes are small hand-written files; these limits turn hostile or
/// accidental inputs (a multi-gigabyte file, a "billion laughs" alias bomb,
/// thousands of nested brackets) into diagnostics instead of memory
/// exhaustion or a stack overflow further down the pipeline.
public struct YAMLLimits: Sendable, Hashable {
    /// Largest accepted input, in bytes (UTF-8 BOM included).
    public var maxBytes: Int = 1 << 20
    /// Total number of nodes that expanding aliases may produce in one
    /// document. Each use of `*name` costs the size of the anchored subtree
    /// (itself counted with its own expanded aliases).
    public var maxAliasExpansion: Int = 10_000
    /// Deepest accepted nesting of sequences and mappings.
    public var maxDepth: Int = 256

    public init(maxBytes: Int = 1 << 20, maxAliasExpansion: Int = 10_000, maxDepth: Int = 256) {
        self.maxBytes = maxBytes
        self.maxAliasExpansion = maxAliasExpansion
        self.maxDepth = maxDepth
    }

    public static let `default` = YAMLLimits()

    /// `1 MiB`, `64 KiB` or `1000 bytes`, for messages about `maxBytes`.
    static func describe(bytes: Int) -> String {
        if bytes > 0, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes > 0, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }
}
