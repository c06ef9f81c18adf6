import Foundation
import SqueezeRecipe

/// What the local executor can give a stage: the machine's memory and GPUs.
/// A stage asking for more fails before it runs, naming the resource; a
/// cluster executor would instead ask the scheduler for it.
public struct LocalMachine: Sendable, Hashable {
    public var memoryBytes: Int
    public var gpus: Int

    public init(memoryBytes: Int, gpus: Int) {
        self.memoryBytes = memoryBytes
        self.gpus = gpus
    }

    /// This machine: physical memory, and the NVIDIA GPUs the kernel exposes
    /// as `/dev/nvidiaN` (Squeeze's backends run on the CPU; a GPU request is
    /// for `command` stages that bring their own code).
    public static let current = LocalMachine(
        memoryBytes: Int(clamping: ProcessInfo.processInfo.physicalMemory), gpus: visibleGPUs())

    static func visibleGPUs() -> Int {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []
        return devices.filter { name in
            name.hasPrefix("nvidia") && name.count > 6 && name.dropFirst(6).allSatisfy(\.isNumber)
        }.count
    }

    /// Why `resources` cannot be met here (the resource's name and the
    /// message), or nil when they can.
    public func shortfall(_ resources: Resources) -> (resource: String, message: String)? {
        if let wanted = resources.memoryBytes, wanted > memoryBytes {
            return ("memory", "the stage needs \(Self.gibibytes(wanted)) of memory; this machine has \(Self.gibibytes(memoryBytes))")
        }
        if let wanted = resources.gpus, wanted > gpus {
            let has = gpus == 0 ? "none (no /dev/nvidiaN device)" : "\(gpus)"
            return ("gpus", "the stage needs \(wanted) GPU\(wanted == 1 ? "" : "s"); this machine has \(has)")
        }
        return nil
    }

    static func gibibytes(_ bytes: Int) -> String {
        String(format: "%.1f GiB", Double(bytes) / 1_073_741_824)
    }
}
