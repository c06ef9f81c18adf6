import CKernels
import Foundation

/// What does the CPU backend's arithmetic on this machine: the instruction-set
/// tier of Squeeze's own kernels and the BLAS (library, version, kernel family)
/// behind fp32 matrix products. Each of them decides result bits, so all of
/// them are in `CPUBackend.numericsFingerprint`.
public enum CPUKernels {
    /// The tier Squeeze's kernels and the BLAS core type are chosen for:
    /// the CPU's own, or lower when `SQUEEZE_KERNELS` asks for it.
    public enum Tier: Int, Sendable, Comparable, CustomStringConvertible {
        case baseline = 0, avx2 = 1, avx512 = 2

        public static func < (a: Tier, b: Tier) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .baseline: "baseline"
            case .avx2: "avx2"
            case .avx512: "avx512"
            }
        }
    }

    /// The tier in use (after `SQUEEZE_KERNELS`).
    public static var tier: Tier { Tier(rawValue: Int(sq_cpu_tier())) ?? .baseline }
    /// The tier this CPU supports.
    public static var detectedTier: Tier { Tier(rawValue: Int(sq_cpu_tier_detected())) ?? .baseline }

    /// Why `SQUEEZE_KERNELS` cannot be used, or nil when it is unset or valid.
    public static var kernelRequestError: String? {
        guard sq_kernel_request_valid() == 0 else { return nil }
        let value = ProcessInfo.processInfo.environment["SQUEEZE_KERNELS"] ?? ""
        return "SQUEEZE_KERNELS=\(value) is not a kernel tier; use avx512, avx2 or baseline, or unset it"
    }

    /// Loads OpenBLAS (once per process); throws when it cannot be used.
    public static func loadBLAS() throws(BLASUnavailable) {
        if let reason = blasLoadError { throw BLASUnavailable(reason: reason) }
    }

    /// Why OpenBLAS cannot be used (loading it first), or nil.
    private static var blasLoadError: String? {
        sq_blas_load() == 0 ? nil : sq_blas_error().map { String(cString: $0) } ?? ""
    }

    /// "OpenBLAS 0.3.21": the first two words of the version line.
    private static var blasVersion: String { blasConfig.split(separator: " ").prefix(2).joined(separator: " ") }

    /// The BLAS's version line ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH …").
    public static var blasConfig: String { String(cString: sq_blas_config()) }
    /// The BLAS kernel family in use ("SkylakeX", "Haswell", "Prescott", …).
    public static var blasCore: String { String(cString: sq_blas_core()) }

    /// `openblas-0.3.21/SkylakeX`: library, version and kernel family, which
    /// together decide the bits of an fp32 product.
    public static var blasIdentity: String {
        guard blasLoadError == nil else { return "blas-unavailable" }
        return blasVersion.lowercased().replacingOccurrences(of: " ", with: "-") + "/" + blasCore
    }

    /// Who chose the BLAS kernel family: Squeeze (from the tier), the user
    /// (`OPENBLAS_CORETYPE`), or the library's own detection.
    public enum CoreChooser: String, Sendable {
        case squeeze, environment, library
    }

    public static var blasCoreChooser: CoreChooser {
        CoreChooser(rawValue: String(cString: sq_blas_core_source())) ?? .library
    }

    /// One line for `squeeze bench` and run headers: library, kernel, and who chose it.
    public static var gemmDescription: String {
        if let reason = blasLoadError { return "fp32 GEMM: unavailable (\(reason))" }
        let chooser =
            switch blasCoreChooser {
            case .squeeze: "chosen by squeeze for the \(tier) tier"
            case .environment: "forced by OPENBLAS_CORETYPE"
            case .library: "chosen by OpenBLAS"
            }
        return "fp32 GEMM: \(blasVersion), \(blasCore) kernels (\(chooser)); squeeze kernels: \(tier) tier"
    }

    /// A warning when the BLAS runs kernels of a lower tier than this CPU's
    /// (a generic fallback such as `Prescott` on an AVX2 or AVX-512 CPU runs
    /// matrix products 3–5× slower); nil when it runs the right ones.
    public static var slowGEMMWarning: String? {
        guard blasLoadError == nil else { return nil }
        let coreTier = Tier(rawValue: Int(sq_blas_core_tier(sq_blas_core()))) ?? .baseline
        guard coreTier < tier else { return nil }
        let preferred = String(cString: sq_blas_preferred_core())
        let cause =
            blasCoreChooser == .environment
            ? "OPENBLAS_CORETYPE is set to it; unset it (or set \(preferred)) to run the \(tier) kernels"
            : "this OpenBLAS build cannot run \(preferred) kernels; install a DYNAMIC_ARCH build (Debian's libopenblas0-pthread)"
        return "OpenBLAS runs its \(blasCore) kernels on this \(tier) CPU: fp32 matrix products will be several times slower; \(cause)"
    }

    /// `AMD EPYC (family 25, model 17)`: the CPU, as every benchmark states it.
    public static var cpuName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        func field(_ name: String) -> String? {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name {
                    return parts[1].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        let model = field("model name") ?? "unknown CPU"
        guard let family = field("cpu family"), let number = field("model") else { return model }
        return "\(model) (family \(family), model \(number))"
    }
}

/// OpenBLAS could not be loaded or lacks what the CPU backend calls.
public struct BLASUnavailable: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}
