import Foundation

/// The one JSON dialect Squeeze writes: sorted keys, unescaped slashes, dates
/// as ISO 8601 with fractional seconds (so runs started in the same second
/// still order correctly).
public enum SqueezeJSON {
    public static func encoder(pretty: Bool = true) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty
            ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return encoder
    }

    /// Reads dates with or without fractional seconds.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "`\(text)` is not an ISO 8601 date")
        }
        return decoder
    }
}

extension Encodable {
    /// Pretty, key-sorted JSON for `--json` output.
    public var prettyJSON: String {
        (try? SqueezeJSON.encoder().encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    public var compactJSON: String {
        (try? SqueezeJSON.encoder(pretty: false).encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
