import Foundation
import SqueezeTensor
import Synchronization

/// The machine a measurement ran on, as every benchmark states it: the CPU,
/// the tier and variant of Squeeze's kernels, and the BLAS behind fp32
/// products (library, version, kernel family and who chose it).
struct MachineDescription: Encodable {
    var cpu: String
    var kernelTier: String
    var kernelVariant: String
    var gemm: String
    var gemmCore: String

    enum CodingKeys: String, CodingKey {
        case cpu
        case kernelTier = "kernel_tier"
        case kernelVariant = "kernel_variant"
        case gemm
        case gemmCore = "gemm_core"
    }

    /// This process's machine; warns once (stderr) when the BLAS runs slow kernels.
    static var current: MachineDescription {
        CPUWarnings.emitOnce()
        return MachineDescription(
            cpu: CPUKernels.cpuName, kernelTier: CPUKernels.tier.description, kernelVariant: CPUBackend.kernelVariant,
            gemm: CPUKernels.gemmDescription, gemmCore: CPUKernels.blasCore)
    }

    /// `AMD EPYC (family 25, model 17); fp32 GEMM: OpenBLAS 0.3.21, SkylakeX kernels (…); squeeze kernels: avx512`
    var line: String { "\(cpu); \(gemm)" }
}

/// Warnings about the CPU backend's kernels, printed at most once per process.
public enum CPUWarnings {
    private static let emitted = Mutex(false)

    public static func emitOnce() {
        let first = emitted.withLock { done in
            defer { done = true }
            return !done
        }
        guard first, let warning = CPUKernels.slowGEMMWarning else { return }
        FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
    }
}
