/// A tensor backend as the program offers it to recipes: the id a recipe
/// names in `backend:`, what it is, what decides its numerics on this
/// machine (part of every cache key of a stage that uses it) and how to make
/// one for a number of threads.
public struct BackendProvider: Sendable {
    public let id: String
    /// One line for `squeeze stages` and the recipe schema.
    public let summary: String
    /// The id plus whatever decides the backend's result bits (kernel
    /// revision, instruction set, GEMM library); equal fingerprints must mean
    /// equal results for equal inputs.
    public let numericsFingerprint: @Sendable () -> String
    /// A backend using at most `threads` (≥ 1) threads.
    public let make: @Sendable (_ threads: Int) -> any Backend
    /// Why this machine cannot run the backend (a missing system library),
    /// or nil; asked before `make`.
    public let unavailability: @Sendable () -> String?

    public init(
        id: String, summary: String, numericsFingerprint: @escaping @Sendable () -> String,
        make: @escaping @Sendable (_ threads: Int) -> any Backend,
        unavailability: @escaping @Sendable () -> String? = { nil }
    ) {
        self.id = id
        self.summary = summary
        self.numericsFingerprint = numericsFingerprint
        self.make = make
        self.unavailability = unavailability
    }

    /// `CPUBackend`: OpenBLAS products and vectorised C kernels.
    public static let cpu = BackendProvider(
        id: "cpu", summary: "OpenBLAS matrix products and vectorised C kernels, multi-threaded",
        numericsFingerprint: { CPUBackend.numericsFingerprint },
        make: { CPUBackend(threads: Swift.max($0, 1)) },
        unavailability: {
            do {
                try CPUKernels.loadBLAS()
                return nil
            } catch {
                return "the cpu backend cannot run here: \(error)"
            }
        })

    /// `ReferenceBackend`: the specification every other backend is tested against.
    public static let reference = BackendProvider(
        id: "reference", summary: "plain single-threaded loops accumulating in Double; the specification, slow",
        numericsFingerprint: { ReferenceBackend.numericsFingerprint },
        make: { _ in ReferenceBackend() })
}

/// The backends a program offers, by id; the first is the default. Built
/// once (by the CLI) and passed to whatever needs a backend by id: recipe
/// validation, the schema, the stages and their cache keys.
public struct BackendRegistry: Sendable {
    /// In registration order.
    public let providers: [BackendProvider]
    private let byID: [String: BackendProvider]

    /// `providers` must be non-empty with distinct ids (a programming error otherwise).
    public init(_ providers: [BackendProvider]) {
        precondition(!providers.isEmpty, "a backend registry needs at least one backend")
        var byID: [String: BackendProvider] = [:]
        for provider in providers {
            let previous = byID.updateValue(provider, forKey: provider.id)
            precondition(previous == nil, "backend `\(provider.id)` registered twice")
        }
        self.providers = providers
        self.byID = byID
    }

    /// The backends that ship with Squeeze: `cpu` (the default), then `reference`.
    public static let builtin = BackendRegistry([.cpu, .reference])

    /// The default backend's id.
    public var defaultID: String { providers[0].id }

    /// The ids, in registration order.
    public var ids: [String] { providers.map(\.id) }

    public subscript(id: String) -> BackendProvider? { byID[id] }

    /// A backend `id` with `threads` threads; unknown ids throw.
    public func make(_ id: String, threads: Int) throws(UnknownBackend) -> any Backend {
        guard let provider = byID[id] else { throw UnknownBackend(id: id, known: ids) }
        return provider.make(threads)
    }

    /// What enters cache keys for backend `id`; an unknown id stands for itself
    /// (recipe validation has rejected it before any key is made).
    public func numericsFingerprint(_ id: String) -> String {
        byID[id]?.numericsFingerprint() ?? id
    }
}

/// A backend id that no provider registered.
public struct UnknownBackend: Error, Sendable, Hashable, CustomStringConvertible {
    public let id: String
    public let known: [String]

    public init(id: String, known: [String]) {
        self.id = id
        self.known = known
    }

    public var description: String {
        "unknown backend `\(id)`; registered: \(known.map { "`\($0)`" }.joined(separator: ", "))"
    }
}
