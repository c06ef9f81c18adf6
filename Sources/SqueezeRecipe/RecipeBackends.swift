/// The tensor backends a recipe may name with `backend:`: the ids the
/// program registered, each with a one-line description, and the one a
/// recipe gets when it names none.
///
/// The recipe language knows no backend by name: the loader and the schema
/// read whatever the program passes here.
public struct RecipeBackends: Sendable, Hashable {
    /// Backend id → what it is.
    public let descriptions: [String: String]
    /// The backend of a recipe without `backend:`.
    public let defaultID: String

    /// `defaultID` must be one of `descriptions`' ids (a programming error otherwise).
    public init(descriptions: [String: String], defaultID: String) {
        precondition(descriptions[defaultID] != nil, "default backend `\(defaultID)` is not among \(descriptions.keys.sorted())")
        self.descriptions = descriptions
        self.defaultID = defaultID
    }

    /// The ids, sorted.
    public var ids: [String] { descriptions.keys.sorted() }

    public func contains(_ id: String) -> Bool { descriptions[id] != nil }
}
