import Foundation

/// A SHA-256 content digest, written `sha256:<64 lowercase hex>` in JSON and logs.
public struct Digest: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The 64 lowercase hexadecimal characters.
    public let hex: String

    /// Accepts exactly 64 lowercase hexadecimal characters; anything else is `nil`.
    public init?(hex: String) {
        guard Digest.isValidHex(hex.utf8) else { return nil }
        self.hex = hex
    }

    /// Parses the `sha256:<hex>` form used in JSON.
    public init?(string: String) {
        let prefix = "sha256:"
        guard string.hasPrefix(prefix) else { return nil }
        self.init(hex: String(string.dropFirst(prefix.count)))
    }

    /// Builds a digest from the 32 raw bytes of a SHA-256 result.
    package init(bytes: some Sequence<UInt8>) {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        self.hex = String(decoding: out, as: UTF8.self)
    }

    public var description: String { "sha256:" + hex }

    /// The first 12 hex characters, for display.
    public var short: String { String(hex.prefix(12)) }

    /// The two-character fan-out directory used under `objects/` and `trees/`.
    package var fanOut: String { String(hex.prefix(2)) }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.hex < rhs.hex }

    package static func isValidHex(_ utf8: some Collection<UInt8>) -> Bool {
        guard utf8.count == 64 else { return false }
        return utf8.allSatisfy(isHexDigit)
    }

    /// `0`-`9` or `a`-`f`.
    package static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let digest = Digest(string: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected `sha256:` followed by 64 lowercase hex digits, got `\(text)`")
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
