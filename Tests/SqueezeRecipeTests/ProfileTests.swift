import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML
import Testing

@Suite struct ProfileTests {
    static let recipe = """
        version: 1
        name: profiles
        vars:
          profile: quick
          epochs: 3
          rate: 0.5
          note: default
        profiles:
          quick: { epochs: 1, rate: 1 }
          full:
            epochs: 10
          same-as-quick: { epochs: 1, rate: 1.0 }
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
              notes: ${vars.note}
        """

    @Test func theChosenProfileReplacesVariables() throws {
        let recipe = try Fixtures.load(Self.recipe)
        #expect(recipe.profile == "quick")
        #expect(recipe.vars["profile"] == .string("quick"))
        #expect(recipe.vars["epochs"] == .int(1))
        // An integer for a number variable becomes a number, as with `--set`.
        #expect(recipe.vars["rate"] == .double(1))
        #expect(recipe.vars["note"] == .string("default"))
        #expect(recipe.stages["teacher"]?.with["epochs"]?.kind == .int(1))
        #expect(recipe.resolvedDescription.objectField("profile") == .string("quick"))
    }

    @Test func setChoosesAnotherProfile() throws {
        let recipe = try Fixtures.load(Self.recipe, set: ["vars.profile=full"])
        #expect(recipe.profile == "full")
        #expect(recipe.vars["epochs"] == .int(10))
        // `full` does not set `rate`: the recipe's value stays.
        #expect(recipe.vars["rate"] == .double(0.5))
    }

    @Test func setVariablesWinOverTheProfile() throws {
        let recipe = try Fixtures.load(Self.recipe, set: ["vars.epochs=7", "vars.profile=full"])
        #expect(recipe.vars["epochs"] == .int(7))
        #expect(recipe.stages["teacher"]?.with["epochs"]?.kind == .int(7))
    }

    @Test func aNullProfileChoosesNone() throws {
        let recipe = try Fixtures.load(Self.recipe.replacingOccurrences(of: "profile: quick", with: "profile: ~"))
        #expect(recipe.profile == nil)
        #expect(recipe.vars["epochs"] == .int(3))
    }

    @Test func profilesGivingTheSameValuesGiveTheSameStages() throws {
        let quick = try Fixtures.load(Self.recipe)
        let same = try Fixtures.load(Self.recipe, set: ["vars.profile=same-as-quick"])
        // `full` sets `epochs` too, but variables given with `--set` win.
        let plain = try Fixtures.load(Self.recipe, set: ["vars.profile=full", "vars.epochs=1", "vars.rate=1"])
        for id in quick.stages.keys {
            #expect(quick.stages[id]?.resolvedDescription == same.stages[id]?.resolvedDescription)
            #expect(quick.stages[id]?.resolvedDescription == plain.stages[id]?.resolvedDescription)
        }
    }

    @Test(arguments: [
        (["vars.profile=quik"], "unknown profile `quik`", "did you mean `quick`? profiles: `quick`, `full` and `same-as-quick`" as String?, "none"),
        (["vars.profile=zzzzzzzz"], "unknown profile `zzzzzzzz`", "profiles: `quick`, `full` and `same-as-quick`", "none"),
        // A string variable takes any scalar from `--set` as its text.
        (["vars.profile=3"], "unknown profile `3`", "profiles: `quick`, `full` and `same-as-quick`", "none"),
    ])
    func badChoices(set: [String], message: String, hint: String?, position: String) throws {
        let error = try #require(Fixtures.error(Self.recipe, set: set))
        #expect(error.message == "`--set \(set[0])`: \(message)")
        #expect(error.hint == hint)
        #expect(error.position == position)
    }

    @Test func unknownProfileInTheRecipeIsPositioned() throws {
        let text = Self.recipe.replacingOccurrences(of: "profile: quick", with: "profile: fulll")
        let error = try #require(Fixtures.error(text))
        #expect(error.message == "unknown profile `fulll`")
        #expect(error.position == "4:12")
        #expect(error.hint?.hasPrefix("did you mean `full`?") == true)
    }

    @Test func theProfileVariableMustBeAString() throws {
        let error = try #require(Fixtures.error(Self.recipe.replacingOccurrences(of: "profile: quick", with: "profile: 3")))
        #expect(error.message == "`vars.profile` must be a string, got an integer")
        #expect(error.position == "4:12")
    }

    @Test func everyProfileIsChecked() {
        let text = """
            \(header)
            vars: { profile: a, epochs: 1, rate: 0.5 }
            profiles:
              a: { epochs: 2 }
              b: { epoch: 2, rate: fast, profile: a }
              c: [1]
            stages:
              c: { uses: command, with: { run: [echo, "${vars.epochs}"] } }
            """
        let errors = Fixtures.errors(text)
        #expect(errors.map(\.position) == ["6:8", "6:24", "6:30", "7:6"])
        #expect(errors.map(\.message) == [
            "profile `b` sets `epoch`, which is not declared under `vars:`",
            "profile `b` sets `rate` to a string, but the variable is a number",
            "profile `b` sets `profile`, which chooses the profile",
            "profile `c` must be a mapping of variable names to values, got a list",
        ])
        #expect(errors.first?.hint == "did you mean `epochs`?")
    }

    @Test func profilesNeedAProfileVariable() throws {
        let text = """
            \(header)
            vars: { epochs: 1 }
            profiles:
              quick: { epochs: 2 }
            stages:
              c: { uses: command, with: { run: [echo, "${vars.epochs}"] } }
            """
        let error = try #require(Fixtures.error(text))
        #expect(error.message == "`profiles:` is given but there is no `profile` variable to choose one")
        #expect(error.position == "4:1")
        #expect(error.hint == "add `profile: quick` under `vars:` (choose another with `--set vars.profile=NAME`)")
    }
}

extension Value {
    /// A field of an object value, or nil.
    func objectField(_ key: String) -> Value? {
        if case .object(let fields) = self { fields[key] } else { nil }
    }
}
