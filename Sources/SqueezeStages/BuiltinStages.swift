import SqueezeEngine
import SqueezeTensor

/// The stage types that ship with Squeeze.
public enum BuiltinStages {
    /// The stage types, with `backends` as the tensor backends their stages
    /// may run on and the source of their cache keys' backend fingerprints.
    public static func registry(backends: BackendRegistry) -> StageRegistry {
        StageRegistry(
            [
                StageType(CommandStage()),
                StageType(ModelImportStage()),
                StageType(TextClassificationDataStage()),
                StageType(FinetuneStage(backends: backends)),
                StageType(EvalClassificationStage(backends: backends)),
                StageType(DistillStage(backends: backends)),
                StageType(SelectLayersStage()),
                StageType(CoFiPruneStage(backends: backends)),
                StageType(QuantizePTQStage(backends: backends)),
                StageType(QuantizeDynamicStage()),
                StageType(QuantizeWeightOnlyStage()),
                StageType(PruneOneShotStage(backends: backends)),
                StageType(QuantizeGPTQStage(backends: backends)),
                StageType(TrainBPEStage()),
                StageType(TextDataStage()),
                StageType(TrainCausalLMStage(backends: backends)),
                StageType(EvalPerplexityStage(backends: backends)),
                StageType(EvalGenerateStage(backends: backends)),
                StageType(ExportONNXStage()),
                StageType(ExportHFStage()),
            ],
            backendFingerprint: backends.numericsFingerprint)
    }
}
