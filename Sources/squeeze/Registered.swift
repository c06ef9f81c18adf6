import SqueezeEngine
import SqueezeStages
import SqueezeTensor

/// What this squeeze offers recipes, built once and handed to the loader,
/// the schema and the engine.
enum Registered {
    /// The tensor backends a recipe may name.
    static let backends = BackendRegistry.builtin
    /// The stage types, running on `backends`.
    static let stages = BuiltinStages.registry(backends: backends)
}
