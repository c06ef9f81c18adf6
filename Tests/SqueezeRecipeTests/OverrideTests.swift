import SqueezeRecipe
import SqueezeYAML
import Testing

@Suite struct OverrideTests {
    static let recipe = """
        version: 1
        name: overrides
        vars:
          epochs: 2
          rate: 0.5
          prefix: run
          names: [a, b]
          flag: false
        stages:
          base: { uses: model/import, with: { source: x } }
          data: { uses: data/load, with: { train: t.tsv } }
          teacher:
            uses: train/finetune
            with:
              model: ${base.model}
              data: ${data.dataset}
              epochs: ${vars.epochs}
              lr: ${vars.rate}
              notes: ${vars.prefix}
          c:
            uses: command
            with: { run: [echo, hi], shell: "${vars.flag}" }
        """

    @Test func parseSplitsAtTheFirstEquals() throws {
        let override = try Override.parse("stages.teacher.with.notes=a=b")
        #expect(override.path == ["stages", "teacher", "with", "notes"])
        #expect(override.valueText == "a=b")
        #expect(override.argument == "stages.teacher.with.notes=a=b")
        #expect(override.target == .parameter(stage: "teacher", path: ["notes"]))
        #expect(try Override.parse("seed=").valueText == "")
        #expect(try Override.parse("vars.x=1").target == .variable("x"))
        #expect(try Override.parse("stages.a.backend=cpu").target == .stageBackend("a"))
        #expect(try Override.parse("backend=cpu").target == .backend)
    }

    @Test(arguments: [
        ("vars.epochs", "`--set vars.epochs`: expected PATH=VALUE", nil as String?),
        ("=3", "`--set =3`: the path before `=` is empty", nil),
        ("vars..x=1", "`--set vars..x=1`: the path `vars..x` has an empty component", nil),
        ("stage.x.with.y=1", "`--set stage.x.with.y=1`: cannot set `stage.x.with.y`: unknown root `stage`", "did you mean `stages`?"),
        ("vars.a.b=1", "`--set vars.a.b=1`: a variable is set whole, as `vars.NAME=VALUE`", nil),
        ("stages.t.wth.x=1", "`--set stages.t.wth.x=1`: cannot set `stages.t.wth.x`", "did you mean `with`?"),
        ("stages.t.uses=x", "`--set stages.t.uses=x`: cannot set `stages.t.uses`", nil),
        ("stages.t.with=x", "`--set stages.t.with=x`: cannot set `stages.t.with`", nil),
        ("seed.x=1", "`--set seed.x=1`: `seed` has no fields to set", nil),
    ])
    func malformedOverrides(argument: String, message: String, hint: String?) {
        do {
            let override = try Override.parse(argument)
            Issue.record("parsed \(override)")
        } catch {
            #expect(error.message == message)
            #expect(error.location == nil)
            if let hint { #expect(error.hint == hint) }
        }
    }

    @Test func goodOverrides() throws {
        let recipe = try Fixtures.load(Self.recipe, set: [
            "vars.epochs=5", "vars.rate=1", "vars.prefix=123", "vars.names=[c, d]",
            "stages.teacher.with.tags.team=vision", "stages.teacher.with.optimizer=sgd",
            "stages.c.with.run.1=bye", "stages.teacher.backend=reference", "seed=7", "backend=reference",
            "stages.data.with.test=${out}/t", "stages.teacher.with.lr=1e-4", "stages.teacher.with.lr=0.25",
        ])
        #expect(recipe.vars["epochs"] == .int(5))
        #expect(recipe.vars["rate"] == .double(1))
        #expect(recipe.vars["prefix"] == .string("123"))
        #expect(recipe.vars["names"] == .array([.string("c"), .string("d")]))
        #expect(recipe.seed == 7)
        #expect(recipe.backend == "reference")

        let teacher = try #require(recipe.stages["teacher"])
        #expect(teacher.backend == "reference")
        #expect(teacher.with["epochs"]?.kind == .int(5))
        // The later override of the same parameter wins.
        #expect(teacher.with["lr"]?.kind == .double(0.25))
        #expect(teacher.with["notes"]?.kind == .string(Template(literal: "123")))
        #expect(teacher.with["optimizer"]?.kind == .string(Template(literal: "sgd")))
        let tags = try #require(teacher.with["tags"])
        guard case .object(let fields) = tags.kind else {
            Issue.record("tags is \(tags.kind)")
            return
        }
        #expect(fields["team"]?.kind == .string(Template(literal: "vision")))
        // Values from a flag are located in a pseudo-file named after it.
        #expect(fields["team"]?.location.file == "--set stages.teacher.with.tags.team=vision")

        #expect(recipe.stages["data"]?.with["test"]?.kind == .string(Template([.reference(.outputDirectory), .literal("/t")])))
        let c = try #require(recipe.stages["c"])
        #expect(c.with["run"]?.writtenValue == .array([.string("echo"), .string("bye")]))
        #expect(c.with["shell"]?.kind == .bool(false))
        #expect(c.backend == "reference")
    }

    @Test func overridesAreVisibleToTheStageTypeCheck() throws {
        let recipe = try Fixtures.load(Self.recipe, set: ["vars.flag=true", "stages.c.with.run=echo hi"])
        #expect(recipe.stages["c"]?.with["shell"]?.kind == .bool(true))
        #expect(recipe.vars["flag"] == .bool(true))
        let error = try #require(Fixtures.error(Self.recipe, set: ["vars.flag=true"]))
        #expect(error.message == "`run` must be a single string when `shell: true`")
        #expect(error.position == "22:18")
    }

    @Test func overrideFillsAWithThatIsNotWritten() throws {
        let recipe = try Fixtures.load(
            "version: 1\nname: x\nstages:\n  c:\n    uses: command\n", set: ["stages.c.with.run=[echo, x]"])
        #expect(recipe.stages["c"]?.with["run"]?.writtenValue == .array([.string("echo"), .string("x")]))
    }

    @Test(arguments: [
        ("vars.epoch=1", "`--set vars.epoch=1`: the recipe has no variable `epoch`", "did you mean `epochs`?" as String?),
        ("vars.epochs=abc", "`--set vars.epochs=abc`: variable `epochs` is an integer, got a string", nil),
        ("vars.epochs=1.5", "`--set vars.epochs=1.5`: variable `epochs` is an integer, got a number", nil),
        ("vars.rate=x", "`--set vars.rate=x`: variable `rate` is a number, got a string", nil),
        ("vars.flag=1", "`--set vars.flag=1`: variable `flag` is a boolean, got an integer", nil),
        ("vars.prefix=[a]", "`--set vars.prefix=[a]`: variable `prefix` is a string, got a list", nil),
        ("vars.names=3", "`--set vars.names=3`: variable `names` is a list, got an integer", nil),
        ("stages.teachr.with.lr=1", "`--set stages.teachr.with.lr=1`: the recipe has no stage `teachr`", "did you mean `teacher`?"),
        ("stages.teacher.with.lrr=1", "`--set stages.teacher.with.lrr=1`: stage type `train/finetune` has no parameter `lrr`", "did you mean `lr`?"),
        ("stages.teacher.with.lr=abc", "`--set stages.teacher.with.lr=abc`: expected a number, got a string", nil),
        ("stages.teacher.with.notes.x=1", "`--set stages.teacher.with.notes.x=1`: cannot set `notes.x`: `notes` is a string", nil),
        ("stages.c.with.run.5=x", "`--set stages.c.with.run.5=x`: cannot set `run.5`: `run` is a list of 2 items, and `5` is not an index in it", nil),
        ("stages.teacher.backend=gpu", "`--set stages.teacher.backend=gpu`: unknown backend `gpu`", nil),
        ("stages.nobody.backend=cpu", "`--set stages.nobody.backend=cpu`: the recipe has no stage `nobody`", nil),
        ("seed=-3", "`--set seed=-3`: `seed` must be a non-negative integer, got -3", nil),
        ("backend=cpuu", "`--set backend=cpuu`: unknown backend `cpuu`", "did you mean `cpu`?"),
        ("stages.teacher.with.model=${base.modl}", "`--set stages.teacher.with.model=${base.modl}`: stage `base` (`model/import`) has no output `modl`", "did you mean `model`?"),
    ])
    func badOverrides(argument: String, message: String, hint: String?) throws {
        let error = try #require(Fixtures.error(Self.recipe, set: [argument]))
        #expect(error.message == message)
        #expect(error.location == nil)
        if let hint { #expect(error.hint == hint) }
    }

    @Test func unparsableValueNamesTheFlag() throws {
        let error = try #require(Fixtures.error(Self.recipe, set: ["stages.teacher.with.epochs=[1"]))
        #expect(error.location == nil)
        #expect(error.message.hasPrefix("`--set stages.teacher.with.epochs=[1`: "))
    }

    @Test func overrideErrorsComeBeforeRecipeErrors() {
        let errors = Fixtures.errors(Self.recipe + "\n    bogus: 1\n", set: ["vars.nope=1", "seed=x"])
        #expect(errors.map(\.position) == ["none", "none", "23:5"])
        #expect(errors.map(\.message) == [
            "`--set vars.nope=1`: the recipe has no variable `nope`",
            "`--set seed=x`: `seed` must be a non-negative integer, got a string",
            "unknown key `bogus` in stage `c`",
        ])
    }

    @Test func overrideOfAStageWithAnUnknownTypeIsNotACascade() {
        let errors = Fixtures.errors("version: 1\nname: x\nstages:\n  a: { uses: nope }\n", set: ["stages.a.with.x=1"])
        #expect(errors.map(\.message) == ["unknown stage type `nope`"])
    }
}
