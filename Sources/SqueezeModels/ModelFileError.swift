/// A model file (safetensors, config, vocabulary) that cannot be used, with
/// the file and the reason; never a crash.
public struct ModelFileError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var message: String

    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
