import Foundation
import Glibc
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport
import SqueezeYAML

/// Copies a stage's output out of the cache into a directory the user named
/// (`Publication`): an export's `destination`. The directory appears complete
/// or not at all (a temporary sibling, fsynced, renamed), and it is replaced
/// only when squeeze put it there, which its marker file says; anything else
/// in the way is refused before any stage runs (`Pipeline.checkPublications`).
public enum Publisher {
    /// The marker squeeze leaves in a directory it published.
    public static let markerName = ".squeeze-published.json"

    /// What the marker records: which stage output, which content, which run.
    struct Marker: Codable, Equatable {
        var recipe: String
        var stage: String
        var output: String
        var digest: String
        var run: String
    }

    /// Why `destination` cannot receive a publication, or nil when it can: a
    /// missing or empty directory, or one squeeze published before. It must
    /// not be inside the cache or runs folders (`engineDirectories`).
    static func problem(destination: String, engineDirectories: [String]) -> String? {
        let absolute = FileSystem.absolute(destination)
        for engine in engineDirectories {
            let root = FileSystem.absolute(engine)
            if absolute == root || absolute.hasPrefix(root + "/") || root.hasPrefix(absolute + "/") {
                return "\(destination) overlaps squeeze's own folder \(engine); choose a directory outside it"
            }
        }
        let status: FileSystem.Status?
        do {
            status = try FileSystem.lstatIfPresent(absolute)
        } catch {
            return "cannot inspect \(destination): \(error)"
        }
        guard let status else { return nil }
        guard status.fileType == UInt32(S_IFDIR) else {
            return "\(destination) exists and is not a directory; name a new or empty directory"
        }
        let entries: [String]
        do {
            entries = try FileSystem.listDirectory(absolute)
        } catch {
            return "cannot list \(destination): \(error)"
        }
        if entries.isEmpty || entries.contains(markerName) { return nil }
        return "\(destination) exists and is not empty (\(entries.count) entries) and squeeze did not write it; "
            + "name a new or empty directory, or remove it"
    }

    /// Publishes the tree at `source` (a cache path) as `destination`, unless
    /// the marker there already names the same content.
    static func publish(source: String, digest: String, to destination: String, marker: Marker) throws {
        let target = FileSystem.absolute(destination)
        if let problem = problem(destination: target, engineDirectories: []) {
            throw UserError(problem)
        }
        let markerPath = target + "/" + markerName
        if let bytes = try? FileSystem.readFileIfPresent(markerPath),
           let existing = try? SqueezeJSON.decode(Marker.self, from: Data(bytes)),
           existing.digest == digest, existing.stage == marker.stage, existing.output == marker.output {
            return
        }
        let parent = FileSystem.parent(of: target)
        try FileSystem.makeDirectories(parent)
        let staged = target + ".squeeze-publish" + FileSystem.randomSuffix()
        try AtomicDirectory.create(staged) { temporary in
            try copyTree(source, to: temporary)
            try AtomicFile.write(Data(try SqueezeJSON.encode(marker, pretty: true)), to: temporary + "/" + markerName)
        }
        // Swap: the old publication (or empty directory) moves aside, the new one takes its name.
        var previous: String?
        if try FileSystem.lstatIfPresent(target) != nil {
            let aside = target + ".squeeze-old" + FileSystem.randomSuffix()
            try FileSystem.rename(target, to: aside)
            previous = aside
        }
        do {
            try FileSystem.rename(staged, to: target)
        } catch {
            if let previous { try? FileSystem.rename(previous, to: target) }
            try? FileSystem.removeTree(staged)
            throw error
        }
        try FileSystem.fsyncDirectory(parent)
        if let previous { try FileSystem.removeTree(previous) }
    }

    /// Copies the regular files and folders under `source` into the existing
    /// folder `destination`, each file fsynced. Links are not followed: the
    /// store holds none, and a copy never reaches outside `source`.
    static func copyTree(_ source: String, to destination: String) throws {
        for name in try FileSystem.listDirectory(source).sorted() {
            let from = source + "/" + name, to = destination + "/" + name
            let status = try FileSystem.lstat(from)
            switch status.fileType {
            case UInt32(S_IFDIR):
                _ = try FileSystem.makeDirectory(to)
                try copyTree(from, to: to)
                try FileSystem.fsyncDirectory(to)
            case UInt32(S_IFREG):
                try FileSystem.copyFile(from, to: to, durable: true)
            default:
                throw UserError("\(from) is neither a file nor a folder; it cannot be published")
            }
        }
    }
}

extension Pipeline {
    /// The destination a stage's publication names, resolved against the
    /// recipe's folder, or nil when the stage publishes nothing.
    func publicationDestination(of spec: StageSpec) throws -> (publication: Publication, path: String, location: SourceLocation)? {
        guard let publication = try stageType(of: spec).descriptor.publication,
              let value = spec.with[publication.parameter] else { return nil }
        guard case .string(let template) = value.kind else { return nil }
        let text = try ParamValue(.string(template), at: value.location).resolve { reference in
            guard case .environment(let name, let fallback) = reference else {
                throw UserError("\(value.location): `\(publication.parameter)`: \(reference) cannot name a destination; use a path or ${env.NAME}")
            }
            guard let resolved = environment[name] ?? fallback else {
                throw UserError("\(value.location): `\(publication.parameter)`: environment variable `\(name)` is not set")
            }
            return resolved
        }
        guard case .string(let path) = text, !path.isEmpty else { return nil }
        let absolute = path.hasPrefix("/") ? path : (recipe.directory as NSString).appendingPathComponent(path)
        return (publication, (absolute as NSString).standardizingPath, value.location)
    }

    /// Checks, before any stage runs, that every destination the selected
    /// stages publish to can receive its output, and that no two stages
    /// publish to one place; throws one error listing every problem at its
    /// place in the recipe.
    public func checkPublications(only: Set<String>? = nil, runsRoot: String) throws {
        let selected = only.map { closure(of: $0) }
        var problems: [String] = []
        var claimed: [String: String] = [:]
        for id in order where selected?.contains(id) ?? true {
            guard let spec = recipe.stages[id], let (publication, path, location) = try publicationDestination(of: spec) else { continue }
            if let other = claimed[path] {
                problems.append("\(location): `\(publication.parameter)`: stage `\(other)` already publishes to \(path)")
            }
            claimed[path] = id
            if let problem = Publisher.problem(destination: path, engineDirectories: [store.root, runsRoot]) {
                problems.append("\(location): `\(publication.parameter)`: \(problem)")
            }
        }
        if !problems.isEmpty { throw UserError(problems.joined(separator: "\n")) }
    }

    /// Publishes a satisfied stage's output, when its type publishes one.
    func publish(_ record: StageRecord, runID: String) throws {
        guard record.status == .ran || record.status == .cached, let spec = recipe.stages[record.id],
              let (publication, path, _) = try publicationDestination(of: spec),
              let ref = record.outputs[publication.output] else { return }
        let marker = Publisher.Marker(
            recipe: recipe.file, stage: record.id, output: publication.output, digest: ref.digest.description, run: runID)
        try Publisher.publish(source: try store.path(for: ref), digest: ref.digest.description, to: path, marker: marker)
    }
}
