import Foundation
import SqueezeSupport

/// A fresh directory under the system's temporary directory, removed when dropped.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileSystem.absolute(NSTemporaryDirectory() + "/squeeze-support-" + UUID().uuidString)
        try FileSystem.makeDirectories(path)
    }

    deinit { try? FileSystem.removeTree(path) }

    func contents(_ name: String) throws -> [UInt8] { try FileSystem.readFile(path + "/" + name) }
}
