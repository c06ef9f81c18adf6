import Foundation
import SqueezeStages
import SqueezeTensor
import Testing

/// The CPU backend's numerics fingerprint names everything that decides the
/// bits (Squeeze's kernel variant, the BLAS library, version and kernel
/// family), so a run with other kernels never reuses a cached result.
@Suite struct BackendFingerprintTests {
    @Test func builtinRegistryKeysTheBackendsNumerics() {
        let fingerprint = BuiltinStages.registry(backends: .builtin).backendFingerprint
        #expect(fingerprint("cpu") == CPUBackend.numericsFingerprint)
        #expect(fingerprint("reference") == ReferenceBackend.numericsFingerprint)
        #expect(fingerprint("cpu") != fingerprint("reference"))
    }

    @Test func fingerprintNamesTheKernelsAndTheBLAS() throws {
        try CPUKernels.loadBLAS()
        let fingerprint = CPUBackend.numericsFingerprint
        #expect(fingerprint.hasPrefix("cpu/r"))
        #expect(fingerprint.contains("/\(CPUBackend.kernelVariant)/"), "\(fingerprint)")
        #expect(fingerprint.hasSuffix("/\(CPUKernels.blasCore)"), "\(fingerprint)")
        #expect(CPUKernels.blasIdentity.hasPrefix("openblas-0."), "\(CPUKernels.blasIdentity)")
        #expect(!CPUKernels.blasCore.isEmpty)
    }

    /// On an x86-64 CPU with AVX2 or better, squeeze chooses the BLAS core
    /// from the tier, so OpenBLAS never runs a generic fallback by default.
    @Test func theBLASRunsTheKernelsOfTheCPUsTier() throws {
        try CPUKernels.loadBLAS()
        guard CPUKernels.blasCoreChooser == .squeeze else {
            print("skipped: OPENBLAS_CORETYPE is set in the test environment, or this CPU has no AVX2")
            return
        }
        // Set only while the library initialised, so children see the user's environment.
        #expect(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil)
        switch CPUKernels.tier {
        case .avx512: #expect(CPUKernels.blasCore == "SkylakeX")
        case .avx2: #expect(CPUKernels.blasCore == "Haswell")
        case .baseline: break
        }
        #expect(CPUKernels.slowGEMMWarning == nil)
    }

    /// A run made with other kernels (here: Squeeze's baseline kernels and the
    /// BLAS's own core choice, forced with SQUEEZE_KERNELS) sees every tensor
    /// stage as stale, and `plan` names the backend change as the reason.
    @Test func planReportsAKernelChangeAsABackendChange() throws {
        guard CPUKernels.detectedTier > .baseline else {
            print("skipped: this CPU runs the baseline kernels only; there is no other tier to force")
            return
        }
        let recipe = TinySentiment.recipe(name: "fingerprint", stages: TinySentiment.teacherStage(length: "epochs: 1"))
        let project = try TinySentiment.makeProject("backend-fingerprint", recipe: recipe)
        let run = try project.run()
        try #require(run.status == 0, "\(run)")

        let same = try CLIBehaviourTests.plan(project)
        #expect(same["teacher"]?.status == "cached", "\(same)")

        let forced = try CLIBehaviourTests.plan(project, environment: ["SQUEEZE_KERNELS": "baseline"])
        let teacher = try #require(forced["teacher"])
        #expect(teacher.status == "run")
        #expect(teacher.reason.contains("backend changed (\(CPUBackend.numericsFingerprint) → cpu/"), "\(teacher.reason)")
        #expect(teacher.reason.contains("/baseline/"), "\(teacher.reason)")
        // Stages that run no tensors keep their keys.
        #expect(forced["data"]?.status == "cached", "\(forced)")

        // Another BLAS kernel family alone (OpenBLAS's generic one) changes the key too.
        let generic = try CLIBehaviourTests.plan(project, environment: ["OPENBLAS_CORETYPE": "Prescott"])
        let reason = try #require(generic["teacher"]).reason
        #expect(reason.contains("backend changed (") && reason.hasSuffix("/Prescott)"), "\(reason)")
    }

    /// Generic BLAS kernels on a CPU that has better ones are named, once.
    @Test func slowBLASKernelsAreWarnedAboutOnce() throws {
        guard CPUKernels.detectedTier > .baseline else {
            print("skipped: this CPU runs the baseline kernels only; generic BLAS kernels are its own tier")
            return
        }
        let project = try Project("slow-blas-warning")
        let forced = try project.squeeze(
            ["bench", "int8", "--rounds", "1", "--work", "100000"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(forced.status == 0, "\(forced)")
        #expect(forced.stdout.contains("Prescott kernels (forced by OPENBLAS_CORETYPE)"), "\(forced.stdout)")
        let warning = "warning: OpenBLAS runs its Prescott kernels"
        #expect(forced.stderr.components(separatedBy: warning).count == 2, "\(forced.stderr)")

        let chosen = try project.squeeze(["bench", "int8", "--rounds", "1", "--work", "100000"])
        #expect(chosen.status == 0, "\(chosen)")
        #expect(!chosen.stderr.contains("warning:"), "\(chosen.stderr)")
    }

    @Test func anUnknownKernelTierIsAUsageError() throws {
        let project = try Project("kernel-tier-typo")
        let result = try project.squeeze(["stages"], environment: ["SQUEEZE_KERNELS": "avx1024"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("SQUEEZE_KERNELS=avx1024 is not a kernel tier"), "\(result.stderr)")
    }
}
