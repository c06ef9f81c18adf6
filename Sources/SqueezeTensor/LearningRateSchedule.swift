/// Linear warmup from 0 to `peak` over `warmupSteps`, then linear decay to 0
/// at `totalSteps`, as Hugging Face `get_linear_schedule_with_warmup`.
///
/// `learningRate(forUpdate:)` takes the number of updates already applied
/// (the scheduler's `last_epoch`), so with warmup the very first update uses
/// a learning rate of 0, exactly as the PyTorch loop `optimizer.step();
/// scheduler.step()` does.
public struct LinearWarmupSchedule: Sendable, Hashable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(peak: Float, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The learning rate of update number `completed` (0-based).
    public func learningRate(forUpdate completed: Int) -> Float {
        let step = Double(completed)
        let factor: Double
        if completed < warmupSteps {
            factor = step / Double(max(1, warmupSteps))
        } else {
            factor = max(0, Double(totalSteps - completed) / Double(max(1, totalSteps - warmupSteps)))
        }
        return Float(Double(peak) * factor)
    }
}
