import Foundation

import Glibc

/// A failure of the content-addressed store. `kind` says what to do about it;
/// `description` names the path and the reason.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable, Hashable {
        /// A system call failed (permissions, disk full, missing file...).
        case io
        /// Stored bytes no longer match their digest, or an entry points at
        /// an artifact that is gone. Callers treat this as a cache miss.
        case corrupt
        /// The artifact is not in the store.
        case missing
        /// Something that cannot be stored: a symlink, socket, device, FIFO,
        /// a name that is not UTF-8, a symlink cycle.
        case unsupported
        /// A stage key that is not a plain file name.
        case invalidKey
        /// Another process is using the store in a way that conflicts (garbage collection).
        case busy
    }

    public var kind: Kind
    /// The file or directory concerned (may be empty when there is none).
    public var path: String
    public var message: String

    public init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? message : "\(path): \(message)"
    }

    /// Whether a caller should treat the failure as "not cached".
    public var isCacheMiss: Bool { kind == .corrupt || kind == .missing }

    package static func corrupt(_ path: String, _ message: String) -> StoreError { StoreError(.corrupt, path: path, message) }
    package static func missing(_ path: String, _ message: String) -> StoreError { StoreError(.missing, path: path, message) }
    package static func unsupported(_ path: String, _ message: String) -> StoreError { StoreError(.unsupported, path: path, message) }

    /// A failed system call, with the `errno` text.
    package static func io(_ path: String, _ operation: String, errno code: Int32) -> StoreError {
        let reason = String(cString: strerror(code))
        return StoreError(.io, path: path, "\(operation) failed: \(reason)")
    }
}
