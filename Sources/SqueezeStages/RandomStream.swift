import SqueezeTensor

/// The `randomBits` streams of a stage seed, all in one place so no two uses
/// in one stage draw the same bits. The numbers are part of what the stages
/// compute: changing one changes their results (and needs a version bump).
///
/// Stages that draw on their seed once use it directly instead:
/// `data/text-classification`'s dev split, `quantize/ptq`'s calibration
/// order and `eval/classification`'s timing batch.
enum RandomStream: UInt64 {
    /// A fresh classifier head (`train/finetune`; a `distill/kd` student without one).
    case classifier = 1
    /// Dropout masks of the training updates.
    case dropout = 2
    /// The batch order of each epoch (the classification `TrainingLoop`; index: the epoch).
    case batchOrder = 3
    /// `distill/kd`'s random student, `init: {from: config}`.
    case studentInit = 4
    /// `distill/kd`'s learned hidden-state projection.
    case projection = 5
    /// `prune/cofi`'s hard-concrete masks.
    case masks = 6
    /// Dropout of `prune/cofi`'s fine-tune after pruning.
    case finetuneDropout = 7
    /// The seed of the batch order of `prune/cofi`'s fine-tune after pruning.
    case finetuneBatchOrder = 8
    /// `train/causal-lm`'s random initialisation from `config`.
    case modelInit = 9

    /// Bits `index` of this stream of `seed`.
    func bits(of seed: UInt64, index: UInt64 = 0) -> UInt64 {
        randomBits(seed: seed, stream: rawValue, index: index)
    }
}
