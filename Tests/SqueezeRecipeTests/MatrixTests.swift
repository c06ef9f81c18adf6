import Collections
import SqueezeRecipe
import SqueezeYAML
import Testing

@Suite struct MatrixTests {
    static let recipe = """
        version: 1
        name: sweep
        vars:
          lr: 0.5
          epochs: 1
          note: x
        matrix:
          lr: [0.1, 0.2]
          epochs: [1, 2]
        stages:
          base: { uses: model/import, with: { source: x } }
          data: { uses: data/load, with: { train: t.tsv } }
          teacher:
            uses: train/finetune
            with: { model: "${base.model}", data: "${data.dataset}", lr: "${vars.lr}" }
          student:
            uses: train/finetune
            with: { model: "${teacher.model}", data: "${data.dataset}", epochs: "${vars.epochs}" }
          report:
            uses: eval/classify
            with: { models: ["${base.model}"], data: "${data.dataset}" }
            needs: [student]
        """

    @Test func stagesAreInstantiatedPerCombinationOfTheVariablesTheyDependOn() throws {
        let recipe = try Fixtures.load(Self.recipe)
        #expect(Array(recipe.stages.keys) == [
            "base", "data", "teacher[lr=0.1]", "teacher[lr=0.2]",
            "student[epochs=1,lr=0.1]", "student[epochs=2,lr=0.1]", "student[epochs=1,lr=0.2]", "student[epochs=2,lr=0.2]",
            "report[epochs=1,lr=0.1]", "report[epochs=2,lr=0.1]", "report[epochs=1,lr=0.2]", "report[epochs=2,lr=0.2]",
        ])
        #expect(recipe.matrix?.variables == ["epochs", "lr"])
        #expect(recipe.matrix?.combinations.count == 4)

        let student = try #require(recipe.stages["student[epochs=2,lr=0.1]"])
        #expect(student.baseID == "student")
        #expect(student.matrixValues == ["epochs": .int(2), "lr": .double(0.1)])
        #expect(student.dependencies == ["teacher[lr=0.1]", "data"])
        #expect(student.with["epochs"]?.kind == .int(2))
        // References keep naming the base stage: the key of a stage does not depend on instance ids.
        #expect(student.with["model"]?.writtenValue == .string("${teacher.model}"))
        #expect(recipe.stages["teacher[lr=0.2]"]?.with["lr"]?.kind == .double(0.2))
        #expect(recipe.stages["report[epochs=1,lr=0.2]"]?.needs == ["student[epochs=1,lr=0.2]"])
        #expect(recipe.stages["base"]?.baseID == "base")
        #expect(recipe.stages["base"]?.matrixValues.isEmpty == true)
    }

    @Test func excludeRemovesAndIncludeAdds() throws {
        let text = Self.recipe.replacingOccurrences(of: "  epochs: [1, 2]\n", with: """
              epochs: [1, 2]
              exclude: [{ lr: 0.2, epochs: 2 }]
              include: [{ lr: 0.3 }, { lr: 0.1, epochs: 1 }]

            """)
        let recipe = try Fixtures.load(text)
        // (0.1, 1), (0.1, 2), (0.2, 1), and (0.3, 1) with `epochs` from `vars:`; (0.1, 1) is there already.
        #expect(recipe.matrix?.combinations.map { $0.values.map(\.canonicalJSON) } == [["1", "0.1"], ["2", "0.1"], ["1", "0.2"], ["1", "0.3"]])
        #expect(recipe.stages.keys.filter { $0.hasPrefix("teacher") } == ["teacher[lr=0.1]", "teacher[lr=0.2]", "teacher[lr=0.3]"])

        let partial = Self.recipe.replacingOccurrences(of: "  epochs: [1, 2]\n", with: "  epochs: [1, 2]\n  exclude: [{ lr: 0.2 }]\n")
        #expect(try Fixtures.load(partial).matrix?.combinations.count == 2)
    }

    @Test func matrixFlagReplacesOrAddsAVariable() throws {
        let narrowed = try Fixtures.load(Self.recipe, matrix: ["vars.lr=0.3"])
        #expect(narrowed.stages.keys.filter { $0.hasPrefix("teacher") } == ["teacher[lr=0.3]"])
        #expect(narrowed.matrix?.combinations.count == 2)

        let plain = Self.recipe.replacingOccurrences(of: "  lr: [0.1, 0.2]\n  epochs: [1, 2]\n", with: "").replacingOccurrences(of: "matrix:\n", with: "")
        let swept = try Fixtures.load(plain, matrix: ["vars.epochs=1,3"])
        #expect(swept.stages.keys.filter { $0.hasPrefix("student") } == ["student[epochs=1]", "student[epochs=3]"])
        #expect(Array(swept.stages.keys.prefix(3)) == ["base", "data", "teacher"])
    }

    @Test func sweepingTheProfileExpandsStagesUsingProfileVariables() throws {
        let text = """
            \(header)
            vars: { profile: quick, epochs: 1, lr: 0.5 }
            profiles:
              quick: { epochs: 1 }
              full: { epochs: 5 }
            matrix:
              profile: [quick, full]
            stages:
              base: { uses: model/import, with: { source: "${vars.lr}" } }
              data: { uses: data/load, with: { train: t.tsv } }
              train:
                uses: train/finetune
                with: { model: "${base.model}", data: "${data.dataset}", epochs: "${vars.epochs}" }
            """
        let recipe = try Fixtures.load(text)
        #expect(Array(recipe.stages.keys) == ["base", "data", "train[profile=quick]", "train[profile=full]"])
        #expect(recipe.stages["train[profile=full]"]?.with["epochs"]?.kind == .int(5))
    }

    @Test func aCombinationThatFailsTheStageCheckIsNamed() throws {
        let text = """
            \(header)
            vars: { flag: false }
            matrix: { flag: [false, true] }
            stages:
              c: { uses: command, with: { run: [echo, hi], shell: "${vars.flag}" } }
            """
        let error = try #require(Fixtures.error(text))
        #expect(error.message == "`run` must be a single string when `shell: true`")
        #expect(error.hint == "in matrix combination `[flag=true]`")
    }

    @Test func badMatricesArePositioned() {
        let text = """
            \(header)
            vars: { lr: 0.5, epochs: 1 }
            matrix:
              lrr: [0.1]
              epochs: []
              lr: [0.1, fast]
              exclude: [{ foo: 1 }]
              max_instances: 0
            stages:
              c: { uses: command, with: { run: [echo, "${vars.lr}"] } }
            """
        let errors = Fixtures.errors(text)
        #expect(errors.map(\.message) == [
            "the matrix sweeps `lrr`, which is not declared under `vars:`",
            "matrix variable `epochs` has no values",
            "matrix value for `lr` is a string, but the variable is a number",
            "`matrix.exclude` names `foo`, which the matrix does not sweep",
            "`max_instances` must be a positive integer, got an integer",
        ])
        #expect(errors.map(\.position) == ["5:3", "6:11", "7:13", "8:15", "9:18"])
        #expect(errors.first?.hint == "did you mean `lr`?")
    }

    @Test func theCapIsCheckedBeforeAnyWork() throws {
        let text = Self.recipe.replacingOccurrences(of: "  epochs: [1, 2]\n", with: "  epochs: [1, 2]\n  max_instances: 3\n")
        let error = try #require(Fixtures.error(text))
        #expect(error.message == "the matrix expands to 4 combinations (2 × 2), more than `max_instances` (3)")
        #expect(error.position == "7:1")
        #expect(error.hint == "narrow it with `--matrix vars.NAME=V1,V2` or `exclude:`, or raise `max_instances:`")

        let huge = Self.recipe.replacingOccurrences(
            of: "  epochs: [1, 2]\n", with: "  epochs: [\(Array(1...2000).map(String.init).joined(separator: ", "))]\n  note: [\(Array(1...1000).map { "n\($0)" }.joined(separator: ", "))]\n")
        let refused = try #require(Fixtures.error(huge))
        #expect(refused.message == "the matrix has 2 × 2000 × 1000 combinations before `exclude:`, far more than `max_instances` (64)")
    }

    @Test func flagsNameThemselves() throws {
        let undeclared = try #require(Fixtures.error(Self.recipe, matrix: ["vars.lrr=1,2"]))
        #expect(undeclared.message == "`--matrix vars.lrr=1,2`: the matrix sweeps `lrr`, which is not declared under `vars:`")
        #expect(undeclared.hint == "did you mean `lr`?")

        let both = try #require(Fixtures.error(Self.recipe, set: ["vars.lr=0.3"]))
        #expect(both.message == "variable `lr` is swept by `matrix:` and also given with `--set`")
        #expect(both.position == "8:3")

        let mismatch = try #require(Fixtures.error(Self.recipe, matrix: ["vars.epochs=1,two"]))
        #expect(mismatch.message == "`--matrix vars.epochs=1,two`: matrix value for `epochs` is a string, but the variable is an integer")

        do {
            _ = try Override.parseMatrix("stages.a.with.x=1,2")
            Issue.record("a matrix flag for a stage parameter parsed")
        } catch {
            #expect(error.message == "`--matrix stages.a.with.x=1,2`: only variables are swept: `vars.NAME`")
        }
    }

    @Test func instanceIDsSortVariablesAndPrintValues() {
        #expect(MatrixSweep.instanceID("int8", ["sparsity": .double(0.8), "observer": .string("mse")]) == "int8[observer=mse,sparsity=0.8]")
        #expect(MatrixSweep.instanceID("int8", [:]) == "int8")
        #expect(MatrixSweep.instanceID("s", ["v": .string("1")]) == #"s[v="1"]"#)
        #expect(MatrixSweep.instanceID("s", ["v": .int(1)]) == "s[v=1]")
        #expect(MatrixSweep.instanceID("s", ["v": .string("a,b")]) == #"s[v="a,b"]"#)
        #expect(MatrixSweep.instanceID("s", ["v": .string("true")]) == #"s[v="true"]"#)
        #expect(MatrixSweep.instanceID("s", ["v": .string("data/x-1.tsv")]) == "s[v=data/x-1.tsv]")
    }

    @Test func repeatedValuesGiveOneCombination() throws {
        let text = Self.recipe.replacingOccurrences(of: "lr: [0.1, 0.2]", with: "lr: [0.1, 0.10, 0.2]")
        let recipe = try Fixtures.load(text)
        #expect(recipe.matrix?.combinations.count == 4)
        #expect(recipe.stages.keys.filter { $0.hasPrefix("teacher") } == ["teacher[lr=0.1]", "teacher[lr=0.2]"])
    }
}
