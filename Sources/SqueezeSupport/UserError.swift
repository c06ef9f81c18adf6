/// Bad input that has no source position (a missing file, a bad flag value);
/// the CLI prints it as `error: …` and exits 2.
public struct UserError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The version of Squeeze, as `squeeze --version` and every report print it.
public enum SqueezeVersion {
    public static let current = "0.1.0"
}
