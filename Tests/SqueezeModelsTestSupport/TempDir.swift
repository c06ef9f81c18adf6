import Foundation

/// A fresh temporary directory per test, removed when the value is dropped.
public final class TempDir {
    public let path: String

    public init() throws {
        path = NSTemporaryDirectory() + "safetensors-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
