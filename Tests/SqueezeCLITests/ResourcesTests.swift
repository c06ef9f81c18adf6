import Foundation
import SqueezeEngine
import SqueezeRecipe
import Testing

/// `resources:` beyond cores: memory and GPUs are checked against the
/// machine before a stage runs (a cache hit needs neither), `time` stops a
/// stage that runs too long, and bad values are recipe errors with positions.
@Suite struct ResourcesTests {
    static func recipe(_ resources: String, run: String = #"[sh, -c, 'echo hi > "$0"/hi.txt', "${out}"]"#) -> String {
        """
        version: 1
        name: resources
        stages:
          work:
            uses: command
            resources: \(resources)
            with:
              run: \(run)
              outputs: [hi.txt]
        """
    }

    @Test func amountsAndDurationsParseAsSlurmWritesThem() {
        #expect(Resources.memory("8G") == 8 << 30 && Resources.memory("512M") == 512 << 20 && Resources.memory("1.5GiB") == 3 << 29)
        #expect(Resources.memory("2t") == 2 << 40 && Resources.memory("64KB") == 64 << 10)
        #expect(Resources.memory("8") == nil && Resources.memory("G") == nil && Resources.memory("-1G") == nil && Resources.memory("8X") == nil)
        #expect(Resources.duration("90s") == 90 && Resources.duration("30m") == 1800 && Resources.duration("2h") == 7200 && Resources.duration("1d") == 86400)
        #expect(Resources.duration("45") == 2700 && Resources.duration("1:30") == 90 && Resources.duration("1:00:00") == 3600)
        #expect(Resources.duration("1-12") == 129_600 && Resources.duration("1-00:30") == 88_200 && Resources.duration("2-00:00:01") == 172_801)
        #expect(Resources.duration("0") == nil && Resources.duration("a:b") == nil && Resources.duration("1:2:3:4") == nil && Resources.duration("") == nil)
    }

    @Test func badValuesAreRecipeErrorsAtTheirPosition() throws {
        let project = try Project("resources-bad")
        try project.write("recipe/recipe.yaml", Self.recipe(#"{memory: 8, gpus: -1, time: soon, partition: "", ram: 1G}"#))
        let result = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:6:25: error: `memory` must be an amount with a unit, got `8`"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:6:34: error: `gpus` must be a whole number of at least 0, got `-1`"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:6:44: error: `time` must be a duration, got `soon`"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:6:61: error: `partition` must be a partition name"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:6:65: error: unknown resource `ram`"), "\(result)")
    }

    @Test func aStageAskingMoreThanTheMachineHasFailsBeforeRunningButACacheHitNeedsNothing() throws {
        let project = try Project("resources-machine")
        try project.write("recipe/recipe.yaml", Self.recipe("{memory: 100T, partition: gpu}"))
        let failed = try project.run()
        #expect(failed.status == 1, "\(failed)")
        #expect(failed.stderr.range(
            of: #"recipe\.yaml:6:25: `resources\.memory`: the stage needs 102400\.0 GiB of memory; this machine has [0-9.]+ GiB"#,
            options: .regularExpression) != nil, "\(failed)")
        #expect(!failed.stderr.contains("work: running"), "\(failed)")
        if LocalMachine.current.gpus == 0 {
            try project.write("recipe/recipe.yaml", Self.recipe("{gpus: 1}"))
            let noGPU = try project.run()
            #expect(noGPU.status == 1 && noGPU.stderr.contains("`resources.gpus`: the stage needs 1 GPU; this machine has none"), "\(noGPU)")
        }
        // Resources decide nothing about the bits: once computed, the entry serves any request.
        try project.write("recipe/recipe.yaml", Self.recipe("{cores: 1}"))
        #expect(try project.run().status == 0)
        try project.write("recipe/recipe.yaml", Self.recipe("{memory: 100T, gpus: 64}"))
        let cached = try project.run()
        #expect(cached.status == 0 && cached.stderr.contains("work: cached"), "\(cached)")
    }

    @Test func aStageRunningPastItsTimeIsStoppedWithTimeout() throws {
        let project = try Project("resources-time")
        try project.write("recipe/recipe.yaml", Self.recipe(#"{time: "0:01"}"#, run: #"[sh, -c, 'sleep 30; echo hi > "$0"/hi.txt', "${out}"]"#))
        let started = Date()
        let result = try project.run(timeout: 60)
        #expect(result.status == 1, "\(result)")
        #expect(Date().timeIntervalSince(started) < 20, "the stage was not stopped")
        #expect(result.stderr.contains("recipe.yaml:6:23: TIMEOUT: the stage ran longer than its time limit of 1s and was stopped"), "\(result)")
        // Within its limit the same stage succeeds.
        try project.write("recipe/recipe.yaml", Self.recipe("{time: 5m}"))
        #expect(try project.run().status == 0)
    }
}
