import SqueezeEngine

/// The stage types that ship with Squeeze.
public enum BuiltinStages {
    public static let registry = StageRegistry(
        [
            StageType(CommandStage.self),
            StageType(ModelImportStage.self),
            StageType(TextClassificationDataStage.self),
            StageType(FinetuneStage.self),
            StageType(EvalClassificationStage.self),
            StageType(DistillStage.self),
            StageType(SelectLayersStage.self),
            StageType(CoFiPruneStage.self),
            StageType(QuantizePTQStage.self),
            StageType(QuantizeDynamicStage.self),
            StageType(QuantizeWeightOnlyStage.self),
        ],
        backendFingerprint: Backends.fingerprint)
}
