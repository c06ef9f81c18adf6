import SqueezeRecipe
import SqueezeYAML
import Testing

/// Each error class: message fragment, hint and `line:column`.
@Suite struct RecipeErrorTests {
    // MARK: Top level

    @Test func emptyFile() throws {
        let error = try #require(Fixtures.error(""))
        #expect(error.message == "the recipe is empty")
        #expect(error.location == SourceLocation(file: "recipe.yaml", line: 1, column: 1))
        #expect(error.description.hasPrefix("recipe.yaml:1:1: error: the recipe is empty"))
    }

    @Test func rootNotAMapping() throws {
        let error = try #require(Fixtures.error("- a\n- b\n"))
        #expect(error.message.contains("a recipe must be a mapping"))
        #expect(error.message.contains("got a list"))
        #expect(error.position == "1:1")
    }

    @Test func unsupportedVersionStopsValidation() throws {
        let error = try #require(Fixtures.error("version: 2\nname: -bad\nbogus: 1\nstages: {}\n"))
        #expect(error.message == "unsupported recipe version 2; this squeeze reads version 1")
        #expect(error.position == "1:10")
    }

    @Test func missingRequiredKeys() {
        let errors = Fixtures.errors("description: nothing else\n")
        #expect(errors.map(\.message) == [
            "missing required key `version`", "missing required key `name`", "missing required key `stages`",
        ])
        #expect(errors.allSatisfy { $0.position == "1:1" })
    }

    @Test func versionOfTheWrongType() throws {
        let error = try #require(Fixtures.error("version: one\nname: x\nstages:\n  a: { uses: command, with: { run: [x] } }\n"))
        #expect(error.message == "`version` must be the integer 1, got a string")
        #expect(error.position == "1:10")
    }

    @Test func badNames() throws {
        let bad = try #require(Fixtures.error("version: 1\nname: -bad\nstages:\n  a: { uses: command, with: { run: [x] } }\n"))
        #expect(bad.message == "invalid recipe name `-bad`")
        #expect(bad.position == "2:7")

        let long = String(repeating: "n", count: 65)
        let tooLong = try #require(Fixtures.error("version: 1\nname: \(long)\nstages:\n  a: { uses: command, with: { run: [x] } }\n"))
        #expect(tooLong.message.contains("65 characters long; the limit is 64"))

        let number = try #require(Fixtures.error("version: 1\nname: 2024\nstages:\n  a: { uses: command, with: { run: [x] } }\n"))
        #expect(number.message == "`name` must be a string, got an integer")
        #expect(number.hint?.contains("\"2024\"") == true)
    }

    @Test func unknownTopLevelKey() throws {
        let error = try #require(Fixtures.error("\(header)\nstage:\n  a: { uses: command }\nstages:\n  a: { uses: command, with: { run: [x] } }\n"))
        #expect(error.message == "unknown key `stage`")
        #expect(error.hint == "did you mean `stages`?")
        #expect(error.position == "3:1")
    }

    @Test func unknownBackendAndBadSeed() {
        let errors = Fixtures.errors("\(header)\nbackend: cpuu\nseed: -1\nstages:\n  a: { uses: command, with: { run: [x] } }\n")
        #expect(errors.map(\.message) == ["unknown backend `cpuu`", "`seed` must be a non-negative integer, got -1"])
        #expect(errors.map(\.position) == ["3:10", "4:7"])
        #expect(errors.first?.hint == "did you mean `cpu`?")

        let far = Fixtures.errors("\(header)\nbackend: metal\nseed: 1.5\nstages:\n  a: { uses: command, with: { run: [x] } }\n")
        #expect(far.first?.hint == "available backends: `cpu` and `reference`")
        #expect(far.last?.message == "`seed` must be a non-negative integer, got a number")
    }

    @Test func badVariables() {
        let errors = Fixtures.errors("\(header)\nvars:\n  1x: 3\n  ok: 1\nstages:\n  a: { uses: command, with: { run: [x] } }\n")
        #expect(errors.map(\.message) == ["invalid variable name `1x`"])
        #expect(errors.map(\.position) == ["4:3"])

        let notMapping = Fixtures.errors("\(header)\nvars: [a]\nstages:\n  a: { uses: command, with: { run: [x] } }\n")
        #expect(notMapping.map(\.message) == ["`vars` must be a mapping of names to values, got a list"])
    }

    @Test func emptyOrMissingStages() throws {
        let empty = try #require(Fixtures.error("\(header)\nstages: {}\n"))
        #expect(empty.message == "`stages` is empty")
        #expect(empty.position == "3:1")
        let wrong = try #require(Fixtures.error("\(header)\nstages: [a]\n"))
        #expect(wrong.message.contains("`stages` must be a mapping"))
    }

    // MARK: Stages

    @Test func reservedAndInvalidStageIDs() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              env: { uses: command, with: { run: [x] } }
              bad.id: { uses: command, with: { run: [x] } }
            """)
        #expect(errors.map(\.message) == ["`env` is reserved and cannot be a stage id", "invalid stage id `bad.id`"])
        #expect(errors.map(\.position) == ["4:3", "5:3"])
    }

    @Test func stageNotAMapping() throws {
        let error = try #require(Fixtures.error("\(header)\nstages:\n  a: command\n"))
        #expect(error.message == "stage `a` must be a mapping with at least `uses:`, got a string")
        #expect(error.position == "4:6")
    }

    @Test func missingAndUnknownUses() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              a: { with: { run: [x] } }
              b:
                uses: train/finetun
                with: { nonsense: 1 }
            """)
        #expect(errors.map(\.message) == ["stage `a` has no `uses`", "unknown stage type `train/finetun`"])
        #expect(errors.map(\.position) == ["4:3", "6:11"])
        #expect(errors.last?.hint == "did you mean `train/finetune`?")
    }

    @Test func unknownStageKey() throws {
        let error = try #require(Fixtures.error("\(header)\nstages:\n  a:\n    uses: command\n    wth: {}\n    with: { run: [x] }\n"))
        #expect(error.message == "unknown key `wth` in stage `a`")
        #expect(error.hint == "did you mean `with`?")
        #expect(error.position == "6:5")
    }

    @Test func retriesMustBeACount() throws {
        let error = try #require(Fixtures.error("\(header)\nstages:\n  a:\n    uses: command\n    retries: two\n    with: { run: [x] }\n"))
        #expect(error.message == "`retries` must be a whole number of at least 0, got `two`")
        #expect(error.position == "6:14")
        let recipe = try Fixtures.load("\(header)\nstages:\n  a:\n    uses: command\n    retries: 2\n    with: { run: [x] }\n")
        #expect(recipe.stages["a"]?.retries == 2 && recipe.stages["a"]?.retriesLocation?.line == 6)
    }

    @Test func withNotAMapping() throws {
        let error = try #require(Fixtures.error("\(header)\nstages:\n  a:\n    uses: command\n    with: [run]\n"))
        #expect(error.message == "`with` must be a mapping of parameters, got a list")
        #expect(error.position == "6:11")
    }

    @Test func unknownParameter() throws {
        let error = try #require(Fixtures.error(Self.trainRecipe("epoch: 3")))
        #expect(error.message == "stage type `train/finetune` has no parameter `epoch`")
        #expect(error.hint == "did you mean `epochs`?")
        #expect(error.position == "12:7")
    }

    @Test func missingRequiredParameter() throws {
        let error = try #require(Fixtures.error("""
            \(header)
            stages:
              base: { uses: model/import, with: { source: x } }
              t:
                uses: train/finetune
                with: { model: "${base.model}" }
            """))
        #expect(error.message == "stage `t` is missing required parameter `data` (artifact<dataset>)")
        #expect(error.position == "5:3")
        #expect(error.hint?.contains("The training data.") == true)

        let noWith = try #require(Fixtures.error("\(header)\nstages:\n  c: { uses: command }\n"))
        #expect(noWith.message == "stage `c` is missing required parameter `run` ([string] | string)")
    }

    /// A `train/finetune` stage with one extra `with:` line (line 12, column 7).
    static func trainRecipe(_ line: String, vars: String = "{epochs: 2, names: [a, b]}") -> String {
        """
        \(header)
        vars: \(vars)
        stages:
          base: { uses: model/import, with: { source: x } }
          data: { uses: data/load, with: { train: t.tsv } }
          teacher:
            uses: train/finetune
            with:
              model: ${base.model}
              data: ${data.dataset}
              \(line)
        """
    }

    @Test(arguments: [
        ("epochs: 3.5", "expected an integer, got a number", "12:15"),
        ("epochs: \"3\"", "expected an integer, got a string", "12:15"),
        ("lr: fast", "expected a number, got a string", "12:11"),
        ("notes: 123", "expected a string, got an integer", "12:14"),
        ("notes: [a]", "expected a string, got a list", "12:14"),
        ("optimizer: adamw", "expected one of \"adam\" | \"sgd\", got \"adamw\"", "12:18"),
        ("tags: {a: 1}", "expected a string, got an integer", "12:17"),
        ("tags: [a]", "expected a mapping ({string: string}), got a list", "12:13"),
        ("epochs: ${vars.names}", "expected an integer, got a list", "12:15"),
    ])
    func typeMismatch(line: String, message: String, position: String) throws {
        let error = try #require(Fixtures.error(Self.trainRecipe(line)))
        #expect(error.message == message)
        #expect(error.position == position)
    }

    @Test func typeMismatchHints() throws {
        #expect(Fixtures.error(Self.trainRecipe("notes: 123"))?.hint == "write it in quotes, \"123\", to pass it as a string")
        #expect(Fixtures.error(Self.trainRecipe("epochs: \"3\""))?.hint == "remove the quotes: a quoted value is a string")
        #expect(Fixtures.error(Self.trainRecipe("optimizer: adamw"))?.hint == "did you mean `adam`?")
    }

    @Test func artifactParameters() throws {
        func recipe(model: String) -> String {
            """
            \(header)
            stages:
              base: { uses: model/import, with: { source: x } }
              data: { uses: data/load, with: { train: t.tsv } }
              t:
                uses: train/finetune
                with:
                  model: \(model)
                  data: ${data.dataset}
            """
        }
        let literal = try #require(Fixtures.error(recipe(model: "model.bin")))
        #expect(literal.message == "expected exactly one stage output reference (a `model` artifact), got \"model.bin\"")
        #expect(literal.position == "9:14")

        let longer = try #require(Fixtures.error(recipe(model: "${base.model}/x")))
        #expect(longer.message.contains("expected exactly one stage output reference"))

        let wrongKind = try #require(Fixtures.error(recipe(model: "${data.dataset}")))
        #expect(wrongKind.message == "expected a `model` artifact, but `${data.dataset}` is a `dataset`")
        #expect(wrongKind.position == "9:14")

        let number = try #require(Fixtures.error(recipe(model: "3")))
        #expect(number.message == "expected a reference to a `model` output, got an integer")
    }

    @Test func listsOfArtifactsAndAnyKind() throws {
        let error = try #require(Fixtures.error("""
            \(header)
            stages:
              base: { uses: model/import, with: { source: x } }
              e:
                uses: eval/classify
                with:
                  models: ["${base.model}", 3]
                  data: ${base.model}
            """))
        #expect(error.message == "expected a reference to a `model` output, got an integer")
        #expect(error.position == "8:33")
    }

    @Test func oneOfReportsTheAlternativeWithTheRightShape() throws {
        func command(_ run: String) -> String { "\(header)\nstages:\n  c:\n    uses: command\n    with:\n      run: \(run)\n" }
        let element = try #require(Fixtures.error(command("[echo, 3]")))
        #expect(element.message == "expected a string, got an integer")
        #expect(element.position == "7:19")

        let scalar = try #require(Fixtures.error(command("3")))
        #expect(scalar.message == "expected a string, got an integer")
        #expect(scalar.hint?.contains("quotes") == true)

        let mapping = try #require(Fixtures.error(command("{a: b}")))
        #expect(mapping.message == "expected one of: [string] | string, got a mapping")
        #expect(mapping.position == "7:12")
    }

    @Test func stageTypeCheckRunsOnTheSubstitutedWith() throws {
        let error = try #require(Fixtures.error("""
            \(header)
            vars: { sh: true }
            stages:
              c:
                uses: command
                with: { run: [a, b], shell: "${vars.sh}" }
            """))
        #expect(error.message == "`run` must be a single string when `shell: true`")
        #expect(error.position == "7:18")
    }

    @Test func noParameterErrorsForAnUnknownStageType() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              a:
                uses: nope
                with: { x: "${missing.out}", y: "${vars.nope}" }
            """)
        #expect(errors.map(\.message) == ["unknown stage type `nope`"])
    }

    // MARK: Templates

    @Test(arguments: [
        ("notes: ${vars.epoch}", "unknown variable `epoch` in `${vars.epoch}`", "did you mean `epochs`?"),
        ("notes: ${bse.model}", "unknown stage `bse` in `${bse.model}`", "did you mean `${base.model}`?"),
        ("notes: ${base.modl}", "stage `base` (`model/import`) has no output `modl`", "did you mean `model`?"),
        ("notes: ${var.epochs}", "unknown stage `var` in `${var.epochs}`", "did you mean `${vars.epochs}`?"),
        ("notes: ${Env.HOME}", "unknown stage `Env` in `${Env.HOME}`", "did you mean `${env.HOME}`?"),
        ("notes: ${env.DATA}/x", "environment variable `DATA` is not set", "export it, or write `${env.DATA:-default}`"),
        ("notes: ${base.model", "unclosed `${` in `${base.model`", "close the reference with `}`, or write `$${` for a literal `${`"),
        ("notes: a${}b", "empty reference `${}`", nil),
        ("notes: ${base.mo del}", "malformed reference `${base.mo del}`", nil),
        ("notes: ${outt}", "unknown reference `${outt}`", "did you mean `${out}`?"),
        ("notes: ${vars.1x}", "malformed variable reference `${vars.1x}`", nil),
        ("notes: ${env.A:-${env.B}}", "nested references are not supported: `${env.A:-${env.B}`", nil),
        ("notes: x${vars.names}", "variable `names` is a list and cannot be part of a string", nil),
        ("notes: ${teacher.model}", "stage `teacher` refers to its own output", "a stage's own output directory is `${out}`"),
    ])
    func templateErrors(line: String, message: String, hint: String?) throws {
        let error = try #require(Fixtures.error(Self.trainRecipe(line)))
        #expect(error.message == message)
        if let hint { #expect(error.hint == hint) }
        #expect(error.position == "12:14")
    }

    @Test func environmentWithFallbackOrSetIsFine() throws {
        let recipe = try Fixtures.load(Self.trainRecipe("notes: ${env.DATA}-${env.OTHER:-}"), environment: ["DATA": "/d"])
        #expect(recipe.stages["teacher"]?.with["notes"]?.kind == .string(Template([
            .reference(.environment(name: "DATA", fallback: nil)), .literal("-"),
            .reference(.environment(name: "OTHER", fallback: "")),
        ])))
    }

    @Test func variableReferringToAVariable() {
        let errors = Fixtures.errors(Self.trainRecipe("notes: ${vars.b}", vars: "{a: 1, b: \"x${vars.a}\"}"))
        #expect(errors.map(\.message) == ["variable `b` refers to another variable (`${vars.a}`)"])
        #expect(errors.map(\.position) == ["3:17"])
    }

    @Test func malformedTemplateInAVariableIsReportedOnce() {
        let errors = Fixtures.errors(Self.trainRecipe("notes: ${vars.b}", vars: "{b: \"${oops\"}"))
        #expect(errors.map(\.message) == ["unclosed `${` in `${oops`"])
        #expect(errors.map(\.position) == ["3:11"])
    }

    // MARK: Dependencies

    @Test func badNeeds() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              first: { uses: command, with: { run: [x] } }
              b:
                uses: command
                needs: [firs, b]
                with: { run: [x] }
            """)
        #expect(errors.map(\.message) == ["`needs` names unknown stage `firs`", "stage `b` needs itself"])
        #expect(errors.map(\.position) == ["7:13", "7:19"])
        #expect(errors.first?.hint == "did you mean `first`?")
    }

    @Test func twoStageCycle() throws {
        let error = try #require(Fixtures.error("""
            \(header)
            stages:
              a: { uses: command, needs: b, with: { run: [x] } }
              b: { uses: command, with: { run: ["${a.out}"] } }
            """))
        #expect(error.message == "dependency cycle: a -> b -> a")
        #expect(error.position == "4:3")
    }

    @Test func fiveStageCycleAndAnIndependentOne() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              ok: { uses: command, with: { run: [x] } }
              s1: { uses: command, needs: [ok, s2], with: { run: [x] } }
              s2: { uses: command, with: { run: ["${s3.out}"] } }
              s3: { uses: command, needs: s4, with: { run: [x] } }
              s4: { uses: command, with: { run: [x, "${s5.out}/f"] } }
              s5: { uses: command, needs: [ok], with: { run: ["${s1.out}", "${ok.out}"] } }
              x: { uses: command, needs: y, with: { run: [x] } }
              y: { uses: command, needs: x, with: { run: [x] } }
            """)
        #expect(errors.map(\.message) == [
            "dependency cycle: s1 -> s2 -> s3 -> s4 -> s5 -> s1",
            "dependency cycle: x -> y -> x",
        ])
        #expect(errors.map(\.position) == ["5:3", "10:3"])
    }

    @Test func badResources() {
        let errors = Fixtures.errors("""
            \(header)
            stages:
              a: { uses: command, resources: { cores: 0, memroy: 3 }, with: { run: [x] } }
              b: { uses: command, resources: { cores: most }, with: { run: [x] } }
              c: { uses: command, resources: 4, with: { run: [x] } }
            """)
        #expect(errors.map(\.message) == [
            "`cores` must be a whole number of at least 1 or \"all\", got `0`",
            "unknown resource `memroy`",
            "`cores` must be a whole number of at least 1 or \"all\", got `most`",
            "`resources` must be a mapping such as `{cores: 2}`, got an integer",
        ])
        #expect(errors.map(\.position) == ["4:43", "4:46", "5:43", "6:34"])
    }

    @Test func stageBackendMustBeKnown() throws {
        let error = try #require(Fixtures.error("\(header)\nstages:\n  a: { uses: command, backend: refrence, with: { run: [x] } }\n"))
        #expect(error.message == "unknown backend `refrence`")
        #expect(error.hint == "did you mean `reference`?")
    }

    @Test func independentErrorsAreAllReportedInOrder() {
        let errors = Fixtures.errors("""
            \(header)
            bogus: 1
            stages:
              b:
                uses: command
                with: { run: [x], shell: maybe }
              a:
                uses: train/finetune
                with: { model: "${zz.model}", data: "${b.out}", epochs: x }
            """)
        #expect(errors.map(\.position) == ["3:1", "7:30", "10:20", "10:41", "10:61"])
        #expect(errors.map(\.message) == [
            "unknown key `bogus`",
            "expected a boolean, got a string",
            "unknown stage `zz` in `${zz.model}`",
            "expected a `dataset` artifact, but `${b.out}` is a `directory`",
            "expected an integer, got a string",
        ])
    }
}

@Suite struct RecipeShapeErrorTests {
    @Test func wrongShapesOfStageKeys() {
        let errors = Fixtures.errors("""
            \(header)
            description: [a]
            stages:
              a: { uses: command, needs: { b: c }, description: 3, with: { run: [x] } }
              b: { uses: [command], with: { run: [x] } }
            """)
        #expect(errors.map(\.message) == [
            "`description` must be a string, got a list",
            "`needs` must be a stage id or a list of stage ids, got a mapping",
            "`description` must be a string, got an integer",
            "`uses` must be a string, got a list",
        ])
        #expect(errors.map(\.position) == ["3:14", "5:30", "5:53", "6:14"])
    }
}
