import SqueezeSupport

/// Whether an artifact is a single file or a directory tree.
public enum ArtifactType: String, Sendable, Codable {
    case file
    case directory
}

/// A stored artifact: its content digest, kind and total size in bytes.
///
/// A file's digest is the SHA-256 of its bytes; a directory's digest is the
/// SHA-256 of its canonical manifest (see `TreeManifest`).
public struct ArtifactRef: Hashable, Sendable, Codable {
    public var digest: Digest
    public var type: ArtifactType
    /// Total bytes of the file, or of all files in the directory.
    public var size: Int64

    public init(digest: Digest, type: ArtifactType, size: Int64) {
        self.digest = digest
        self.type = type
        self.size = size
    }
}
