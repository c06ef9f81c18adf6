import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` at any moment must leave a cache that verifies clean and a rerun
/// that produces exactly what an uninterrupted run produces.
@Suite struct CrashSafetyTests {
    /// Four stages writing several MB each: two large files, a directory of
    /// files, and a stage combining two upstream outputs.
    static let recipe = """
        version: 1
        name: crash-safety
        stages:
          fill_a:
            uses: command
            with:
              shell: true
              run: head -c 4000000 /dev/zero | tr '\\0' a > "$SQUEEZE_OUT/a.bin"
              outputs: [a.bin]
          fill_b:
            uses: command
            with:
              shell: true
              run: head -c 4000000 /dev/zero | tr '\\0' b > "$SQUEEZE_OUT/b.bin"
              outputs: [b.bin]
          shards:
            uses: command
            with:
              shell: true
              run: |
                mkdir -p "$SQUEEZE_OUT/shards/nested"
                for i in 1 2 3 4 5; do
                  head -c 1000000 /dev/zero | tr '\\0' "$i" > "$SQUEEZE_OUT/shards/part-$i.txt"
                done
                printf 'index\\n' > "$SQUEEZE_OUT/shards/nested/index.txt"
              outputs: [shards/part-5.txt, shards/nested/index.txt]
          combine:
            uses: command
            with:
              shell: true
              run: cat ${fill_a.out}/a.bin ${fill_b.out}/b.bin | tr ab cd > "$SQUEEZE_OUT/combined.bin"
              outputs: [combined.bin]
        """

    @Test(.timeLimit(.minutes(3)))
    func killNineNeverCorruptsTheCache() throws {
        let project = try Project("crash")
        try project.write("recipe/recipe.yaml", Self.recipe)
        let cleanCache = project.path("clean-cache"), cleanRuns = project.path("clean-runs")

        // A clean run in a cache of its own gives the expected outputs and the run's length.
        let clean = try project.squeeze(["run", "recipe/recipe.yaml", "--jobs", "2"] + project.storage(cache: cleanCache, runs: cleanRuns))
        try #require(clean.exitedNormally && clean.status == 0, "\(clean)")
        let expected = try project.record(of: clean, runs: cleanRuns)
        let duration = max(clean.seconds, 0.2)

        // Attempts continue until 10 runs were killed mid-way (at most 40
        // attempts): on a loaded machine a run can outpace its kill time, and
        // a fixed number of attempts then kills too few to mean anything.
        var random = SplitMix64(seed: 0x5EED_C0DE)
        var killed = 0
        var attempt = 0
        while killed < 10 && attempt < 40 {
            defer { attempt += 1 }
            // Alternate plain runs (which make progress) with forced ones
            // (which rewrite entries that already exist).
            let flags = attempt % 2 == 1 ? ["--force", "all"] : []
            let running = try SqueezeCLI.start(
                ["run", "recipe/recipe.yaml", "--jobs", "2"] + project.storage() + flags, in: project.root)
            let delay = random.nextDouble() * 0.7 * duration
            usleep(UInt32(delay * 1_000_000))
            if running.isRunning {
                running.killHard()
                killed += 1
            }
            let result = running.wait(timeout: 30)
            #expect(!result.timedOut, "attempt \(attempt): \(result)")
            if result.exitedNormally {
                #expect(result.status == 0, "attempt \(attempt) finished before the kill but failed: \(result)")
            }
            let verify = try project.verifyCache()
            #expect(
                verify.exitedNormally && verify.status == 0,
                "attempt \(attempt), killed after \(String(format: "%.3f", delay)) s: \(verify)")
        }
        #expect(killed >= 10, "10 runs should have been killed mid-run within 40 attempts (\(killed) were)")

        let rerun = try project.run("recipe/recipe.yaml", ["--jobs", "2"])
        try #require(rerun.exitedNormally && rerun.status == 0, "\(rerun)")
        let final = try project.record(of: rerun)
        #expect(final.status == "succeeded")
        for stage in expected.stages {
            let after = try #require(final.stage(stage.id))
            #expect(after.outputs == stage.outputs, "\(stage.id): outputs differ from the clean run")
            try Self.expectSameTree(
                project.url("clean-runs/\(expected.id)/outputs/\(stage.id)/out"),
                project.url("runs/\(final.id)/outputs/\(stage.id)/out"))
        }
        #expect(try project.verifyCache().status == 0)
    }

    /// Two directories (or links to them) hold the same names and bytes.
    static func expectSameTree(_ a: URL, _ b: URL) throws {
        let left = try files(under: a.resolvingSymlinksInPath())
        let right = try files(under: b.resolvingSymlinksInPath())
        #expect(left.keys.sorted() == right.keys.sorted(), "\(a.path) vs \(b.path)")
        #expect(!left.isEmpty)
        for (name, data) in left {
            #expect(right[name] == data, "\(name) differs")
        }
    }

    static func files(under root: URL) throws -> [String: Data] {
        var result: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root.path)
        while let relative = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let path = root.appendingPathComponent(relative).path
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                result[relative] = try Data(contentsOf: URL(fileURLWithPath: path))
            }
        }
        return result
    }
}

/// A small seeded generator, so kill moments are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func nextDouble() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }
}
