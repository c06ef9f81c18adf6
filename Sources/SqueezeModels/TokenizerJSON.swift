import Foundation

/// Bounds-checked access to a parsed Hugging Face `tokenizer.json`: every
/// lookup names the JSON path it read, so a malformed file becomes a
/// `ModelFileError` saying where and what, never a crash.
struct TokenizerJSONReader {
    let file: String

    func fail(_ path: String, _ message: String) -> ModelFileError {
        ModelFileError(file: file, "`\(path)` \(message)")
    }

    func object(_ value: Any?, _ path: String) throws(ModelFileError) -> [String: Any] {
        guard let object = value as? [String: Any] else { throw fail(path, "must be a JSON object") }
        return object
    }

    /// An object, or nil when the key is absent or `null`.
    func optionalObject(_ value: Any?, _ path: String) throws(ModelFileError) -> [String: Any]? {
        if value == nil || value is NSNull { return nil }
        return try object(value, path)
    }

    func array(_ value: Any?, _ path: String) throws(ModelFileError) -> [Any] {
        guard let array = value as? [Any] else { throw fail(path, "must be a JSON array") }
        return array
    }

    func string(_ value: Any?, _ path: String) throws(ModelFileError) -> String {
        guard let string = value as? String else { throw fail(path, "must be a string") }
        return string
    }

    func optionalString(_ value: Any?, _ path: String) throws(ModelFileError) -> String? {
        if value == nil || value is NSNull { return nil }
        return try string(value, path)
    }

    func int(_ value: Any?, _ path: String) throws(ModelFileError) -> Int {
        guard let number = value as? NSNumber, !Self.isBoolean(number), let int = Int(exactly: number.doubleValue) else {
            throw fail(path, "must be an integer")
        }
        return int
    }

    func bool(_ value: Any?, _ path: String, default fallback: Bool) throws(ModelFileError) -> Bool {
        if value == nil || value is NSNull { return fallback }
        guard let number = value as? NSNumber, Self.isBoolean(number) else { throw fail(path, "must be true or false") }
        return number.boolValue
    }

    /// A token id: a non-negative integer below `TokenizerJSONReader.maximumID`.
    func tokenID(_ value: Any?, _ path: String) throws(ModelFileError) -> Int {
        let id = try int(value, path)
        guard id >= 0, id < Self.maximumID else {
            throw fail(path, "is the token id \(id), outside 0..<\(Self.maximumID)")
        }
        return id
    }

    /// Ids beyond this are refused: the id-to-token table is sized by the largest id.
    static let maximumID = 1 << 24

    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}
