import SqueezeEngine
import SqueezeRecipe
import Testing

private struct EchoStage: Stage {
    struct Params: Decodable, Sendable { var text: String }
    static let descriptor = StageTypeDescriptor(
        type: "test/echo", version: 1, summary: "echo",
        parameters: [ParameterSpec("text", .string, required: true, doc: "text")],
        outputs: [])
    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        StageResult(metrics: ["text": .string(params.text)])
    }
}

@Suite struct StageRegistryTests {
    @Test func erasedStageDecodesParamsAndRuns() async throws {
        let registry = StageRegistry([StageType(EchoStage())])
        let type = try #require(registry["test/echo"])
        let context = StageContext(
            stageID: "e", recipeDirectory: "/", outputDirectory: "/tmp", backend: "cpu", seed: 1, threads: 1,
            log: StageLog(), progress: .silent)
        let result = try await type.run(context, params: .object(["text": .string("hi")]))
        #expect(result.metrics["text"] == .string("hi"))
        await #expect(throws: StageFailure.self) {
            _ = try await type.run(context, params: .object(["text": .int(3)]))
        }
    }
}
