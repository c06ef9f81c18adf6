import Foundation

/// The one JSON dialect of the documents Squeeze writes and reads (run
/// records, stage entries, the stat cache, the last-run index, model and
/// dataset manifests, `--json` output): Codable → `Value` (`ValueEncoder`)
/// → text (`Value.canonicalJSON` compact, `Value.prettyJSON` indented), and
/// back through `Value(json:)` and `ValueDecoder`. Keys are sorted by UTF-8
/// bytes, doubles keep a fraction (`3.0` reads back as a double, `3` as an
/// integer), dates are ISO 8601 with fractional seconds (so runs started in
/// the same second still order correctly) and read with or without them.
public enum SqueezeJSON {
    /// The JSON text of `value`: indented with a trailing newline (for files
    /// people read), or compact (canonical, one line).
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> [UInt8] {
        Array(try text(value, pretty: pretty).utf8)
    }

    public static func text<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        let tree = try ValueEncoder().encode(value)
        return pretty ? tree.prettyJSON : tree.canonicalJSON
    }

    /// Parses `bytes` strictly and decodes a `T`; a syntax error is a
    /// `JSONSyntaxError` (line and column), a shape error a `DecodingError`.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try ValueDecoder().decode(type, from: try Value(json: bytes))
    }
}

extension Encodable {
    /// Indented, key-sorted JSON with a trailing newline, for `--json` output.
    public var prettyJSON: String {
        (try? SqueezeJSON.text(self)) ?? "{}\n"
    }

    /// Canonical one-line JSON, for event streams.
    public var compactJSON: String {
        (try? SqueezeJSON.text(self, pretty: false)) ?? "{}"
    }
}

extension SqueezeJSON {
    /// The `JSONEncoder` that wrote the manifests that are themselves stage
    /// outputs (`squeeze-model.json` of model artifacts, `manifest.json` of
    /// datasets), kept only so that their bytes stay what they were: their
    /// digests enter every downstream cache key, so a new layout would change
    /// the outputs of existing stage versions. They hold strings and integers
    /// only, which read back the same through `decode`. Everything else
    /// writes with `encode`.
    public static func frozenOutputManifestEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return encoder
    }
}
