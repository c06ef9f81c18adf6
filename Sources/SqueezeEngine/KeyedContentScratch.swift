import Foundation
import SqueezeRecipe
import SqueezeStore
import Synchronization

/// The scratch directories `keyedContent` hooks fetch into while keys are
/// made: in the store's staging area (removed with the process, or by the
/// next store that opens after a crash), and removed sooner by whoever made
/// the keys once it is done with them (a plan at its end, a run once the
/// stage has run).
final class KeyedContentScratch: Sendable {
    private let store: ContentStore
    private let made = Mutex<[String]>([])

    init(store: ContentStore) {
        self.store = store
    }

    /// A fresh empty directory, remembered for `removeAll`.
    func makeDirectory() throws -> String {
        let path = try store.makeStagingDirectory(name: "keyed-content")
        made.withLock { $0.append(path) }
        return path
    }

    func scope(recipeDirectory: String) -> KeyedContentScope {
        KeyedContentScope(recipeDirectory: recipeDirectory, makeScratchDirectory: { try self.makeDirectory() })
    }

    func removeAll() {
        let paths = made.withLock { paths in
            defer { paths.removeAll() }
            return paths
        }
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }
}
