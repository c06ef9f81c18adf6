import SqueezeRecipe

/// What the export stages (`export/onnx`, `export/hf`) share: the
/// `destination` a finished export is copied to, outside the cache.
enum ExportStages {
    /// Declared once for both export stages.
    static let destination = Parameter(
        "destination", .optional(.string), outsideKey: true,
        doc: "A directory to copy the export into after every run that produces or finds it (relative to the recipe's folder; `${env.NAME}` allowed), e.g. `deploy/sst2-int8`. It must be missing, empty, or a directory squeeze published before (it holds `.squeeze-published.json`); anything else is refused before any stage runs. The copy appears complete or not at all. Not part of the cache key; the export is also at `runs/<id>/outputs/<stage>/model`.")

    /// The engine publishes the `model` output to `destination`.
    static let publication = Publication(parameter: "destination", output: "model")
}
