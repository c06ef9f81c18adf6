import Foundation
import SqueezeEngine
import SqueezeYAML
import Testing

/// Matrix sweeps share what does not depend on a swept variable, and an
/// instance shares its cache entry with a plain run of the same values.
@Suite struct MatrixSweepTests {
    /// `teacher` and `report` do not depend on `sparsity`; `pruned` does, and
    /// `int8` through `pruned`'s output. Each stage counts under its own tag.
    private func recipe(_ tag: String, matrix: String = "matrix:\n  sparsity: [0.6, 0.8, 0.9]\n") -> String {
        """
        version: 1
        name: sweep
        vars:
          sparsity: 0.5
          observer: minmax
        \(matrix)
        stages:
          teacher:
            uses: test/write
            with: { tag: \(tag)-teacher, text: "T" }
          pruned:
            uses: test/write
            with: { tag: \(tag)-pruned, text: "p${vars.sparsity}", inputs: ["${teacher.result}"] }
          int8:
            uses: test/write
            with: { tag: \(tag)-int8, text: "q${vars.observer}", inputs: ["${pruned.result}"] }
          report:
            uses: test/write
            with: { tag: \(tag)-report, text: "r", inputs: ["${teacher.result}"] }
        """
    }

    private func executions(_ tag: String) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: ["teacher", "pruned", "int8", "report"].map { ($0, ExecutionLog.shared.executions("\(tag)-\($0)")) })
    }

    @Test func unsweptStagesRunOnceAndSweptStagesOncePerValue() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let pipeline = try ws.pipeline(recipe(tag))
        let record = try await ws.run(pipeline)
        #expect(record.status == .succeeded)
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 3, "report": 1])
        #expect(Set(record.stages.map(\.id)) == [
            "teacher", "report", "pruned[sparsity=0.6]", "pruned[sparsity=0.8]", "pruned[sparsity=0.9]",
            "int8[sparsity=0.6]", "int8[sparsity=0.8]", "int8[sparsity=0.9]",
        ])
        // Each instance reads the upstream instance of its own combination.
        let int8 = try #require(record.stage("int8[sparsity=0.8]")?.outputs["result"])
        #expect(try String(contentsOfFile: pipeline.store.path(for: int8) + "/value.txt", encoding: .utf8) == "qminmaxp0.8T")
        // The record says which combination each instance is.
        guard case .object(let recorded) = record.recipe, case .object(let stages)? = recorded["stages"],
              case .object(let instance)? = stages["int8[sparsity=0.8]"] else {
            Issue.record("no int8[sparsity=0.8] in the recorded recipe")
            return
        }
        #expect(instance["base"] == .string("int8"))
        #expect(instance["matrix"] == .object(["sparsity": .double(0.8)]))

        let again = try await ws.run(try ws.pipeline(recipe(tag)))
        #expect(again.stages.allSatisfy { $0.status == .cached })
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 3, "report": 1])

        // A second swept variable multiplies only the stages that use it; the
        // `pruned` instances are already in the cache.
        let twoVariables = try await ws.run(try ws.pipeline(recipe(tag), matrix: ["vars.observer=minmax,mse"]))
        #expect(twoVariables.status == .succeeded)
        #expect(twoVariables.stages.count == 2 + 3 + 6)
        #expect(twoVariables.stage("int8[observer=mse,sparsity=0.9]")?.status == .ran)
        #expect(twoVariables.stage("int8[observer=minmax,sparsity=0.9]")?.status == .cached)
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 6, "report": 1])
    }

    @Test func excludeAndIncludeChangeWhatRuns() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let matrix = """
            matrix:
              sparsity: [0.6, 0.8, 0.9]
              exclude: [{ sparsity: 0.8 }]
              include: [{ sparsity: 0.95, observer: mse }]
            """
        let record = try await ws.run(try ws.pipeline(recipe(tag, matrix: matrix)))
        #expect(record.status == .succeeded)
        // 0.6, 0.9 and the included 0.95; `observer` is swept only by the inclusion.
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 3, "report": 1])
        #expect(record.stage("pruned[sparsity=0.8]") == nil)
        #expect(record.stage("int8[observer=mse,sparsity=0.95]")?.status == .ran)
        #expect(record.stage("int8[observer=minmax,sparsity=0.6]")?.status == .ran)
    }

    @Test func theCapStopsTheSweepBeforeAnyWork() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        do {
            _ = try ws.pipeline(recipe(tag, matrix: "matrix:\n  sparsity: [0.6, 0.8, 0.9]\n  max_instances: 2\n"))
            Issue.record("a sweep over the cap loaded")
        } catch let error as Diagnostics {
            #expect(error.items.map(\.message) == ["the matrix expands to 3 combinations (3), more than `max_instances` (2)"])
        }
        #expect(executions(tag) == ["teacher": 0, "pruned": 0, "int8": 0, "report": 0])
    }

    @Test func anInstanceSharesItsEntryWithAPlainRunOfTheSameValues() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let sweep = try ws.pipeline(recipe(tag))
        #expect(sweep.seed(for: "pruned[sparsity=0.6]") == sweep.seed(for: "pruned"))
        let swept = try await ws.run(sweep)
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 3, "report": 1])

        let plain = try ws.pipeline(recipe(tag, matrix: ""), overrides: ["vars.sparsity=0.6"])
        #expect(plain.seed(for: "pruned") == sweep.seed(for: "pruned[sparsity=0.6]"))
        let plans = try plain.plan()
        #expect(plans.map(\.status) == [.cached, .cached, .cached, .cached])
        #expect(plans.first { $0.id == "pruned" }?.key == swept.stage("pruned[sparsity=0.6]")?.key)
        #expect(plans.first { $0.id == "int8" }?.key == swept.stage("int8[sparsity=0.6]")?.key)
        #expect(plans.first { $0.id == "teacher" }?.key == swept.stage("teacher")?.key)
        let record = try await ws.run(plain)
        #expect(record.stages.allSatisfy { $0.status == .cached })
        #expect(executions(tag) == ["teacher": 1, "pruned": 3, "int8": 3, "report": 1])
    }

    @Test func onlySelectsInstancesById() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let record = try await ws.run(try ws.pipeline(recipe(tag)), only: ["int8[sparsity=0.9]"])
        #expect(record.status == .succeeded)
        #expect(record.stage("pruned[sparsity=0.9]")?.status == .ran)
        #expect(record.stage("pruned[sparsity=0.6]")?.status == .skipped)
        #expect(executions(tag) == ["teacher": 1, "pruned": 1, "int8": 1, "report": 0])
    }
}
