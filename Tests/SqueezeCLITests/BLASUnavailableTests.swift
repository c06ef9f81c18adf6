import Foundation
import Testing

/// When the BLAS cannot be loaded (here: `SQUEEZE_BLAS_LIBRARY` names a file
/// that does not exist, in the child process only), a tensor stage on the cpu
/// backend fails with a message naming the library, `validate` and `plan`
/// keep working, and the reference backend still runs.
@Suite struct BLASUnavailableTests {
    static let missingLibrary = "/nonexistent/libopenblas-squeeze-test.so.0"

    @Test func tensorStageFailsNamingTheLibrary() throws {
        let recipe = TinySentiment.recipe(name: "no-blas", stages: TinySentiment.teacherStage(length: "epochs: 1"))
        let project = try TinySentiment.makeProject("blas-unavailable", recipe: recipe)
        let environment: [String: String?] = ["SQUEEZE_BLAS_LIBRARY": Self.missingLibrary]

        let validate = try project.squeeze(["validate", "recipe/recipe.yaml"], environment: environment)
        #expect(validate.exitedNormally && validate.status == 0, "\(validate)")

        let run = try project.run(environment: environment, timeout: 300)
        #expect(run.exitedNormally && run.status == 1, "\(run)")
        let record = try project.record(of: run)
        #expect(record.stage("base")?.status == "ran")
        #expect(record.stage("data")?.status == "ran")
        let teacher = try #require(record.stage("teacher"))
        #expect(teacher.status == "failed")
        let reason = teacher.reason ?? ""
        #expect(reason.hasPrefix("the cpu backend cannot run here: "), "\(reason)")
        #expect(reason.contains("cannot load the BLAS library SQUEEZE_BLAS_LIBRARY=\(Self.missingLibrary)"), "\(reason)")
        #expect(run.stderr.contains("fp32 GEMM: unavailable (cannot load the BLAS library SQUEEZE_BLAS_LIBRARY=\(Self.missingLibrary)"), "\(run)")

        // Planning still works, the tensor stage keyed by an unavailable BLAS.
        let plan = try project.squeeze(["plan", "recipe/recipe.yaml", "--json"] + project.storage(), environment: environment)
        #expect(plan.exitedNormally && plan.status == 0, "\(plan)")
        let lines = try JSONDecoder().decode([CLIBehaviourTests.PlanLine].self, from: Data(plan.stdout.utf8))
        #expect(lines.first { $0.id == "teacher" }?.status == "run", "\(plan)")
        #expect(lines.first { $0.id == "base" }?.status == "cached", "\(plan)")

        // The reference backend needs no BLAS: the same stage runs on it.
        let reference = try project.run("recipe/recipe.yaml", ["--set", "stages.teacher.backend=reference"], environment: environment, timeout: 600)
        #expect(reference.exitedNormally && reference.status == 0, "\(reference)")
        #expect(try project.record(of: reference).stage("teacher")?.status == "ran")
    }
}
