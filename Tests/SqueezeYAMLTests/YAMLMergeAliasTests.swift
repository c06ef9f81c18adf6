import SqueezeYAML
import Testing

@Suite struct YAMLMergeAliasTests {
    @Test func aliasCopiesAreLocatedAtTheAliasWithInnerNodesAtTheAnchor() throws {
        let root = try parse(
            """
            shared: &opts
              lr: 0.1
            stage:
              with: *opts
            """)
        let copy = try #require(root["stage"]?["with"])
        #expect(position(copy) == "4:9")
        #expect(copy.kind == root["shared"]?.kind)
        #expect(position(copy["lr"]) == "2:7")
    }

    @Test func anchorsCanBeRedefined() throws {
        let root = try parse("a: &x 1\nb: *x\nc: &x 2\nd: *x\n")
        #expect(root["b"]?.scalar == "1")
        #expect(root["d"]?.scalar == "2")
    }

    @Test func mergeKeyCopiesMissingKeys() throws {
        let root = try parse(
            """
            defaults: &defaults
              lr: 0.1
              epochs: 3
            train:
              epochs: 5
              <<: *defaults
              seed: 1
            """)
        let train = try #require(root["train"]?.entries)
        #expect(train.map(\.key.scalar) == ["epochs", "lr", "seed"])
        #expect(root["train"]?["epochs"]?.scalar == "5")
        #expect(root["train"]?["lr"]?.scalar == "0.1")
        #expect(position(root["train"]?["lr"]) == "2:7")
    }

    @Test func explicitKeysAfterTheMergeAlsoWin() throws {
        let root = try parse("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 9\n")
        #expect(root["m"]?.entries?.map(\.key.scalar) == ["y", "x"])
        #expect(root["m"]?["x"]?.scalar == "9")
    }

    @Test func mergeOfAListEarlierMappingsWin() throws {
        let root = try parse(
            """
            a: &a {x: a, only_a: 1}
            b: &b {x: b, only_b: 2}
            m:
              <<: [*a, *b]
              z: 0
            """)
        let entries = try #require(root["m"]?.entries)
        #expect(entries.map(\.key.scalar) == ["x", "only_a", "only_b", "z"])
        #expect(root["m"]?["x"]?.scalar == "a")
    }

    @Test func mergeOfAnInlineMappingAndNestedMerges() throws {
        let root = try parse(
            """
            base: &base {a: 1}
            mid: &mid
              <<: *base
              b: 2
            top:
              <<: [*mid, {c: 3}]
            """)
        #expect(root["top"]?.entries?.map(\.key.scalar) == ["a", "b", "c"])
    }

    @Test func mergedKeysAreNotDuplicatesButExplicitOnesAre() throws {
        _ = try parse("a: &a {x: 1}\nb: &b {x: 2}\nm:\n  <<: [*a, *b]\n  x: 3\n")
        expectError("a: &a {x: 1}\nm:\n  <<: *a\n  y: 1\n  y: 2\n", at: 5, 3, "duplicate key `y` (first defined at line 4)")
        expectError(
            "a: &a {x: 1}\nm:\n  <<: *a\n  <<: *a\n", at: 4, 3, "duplicate key `<<` (first defined at line 3)",
            hint: "<<: [*first, *second]")
    }

    @Test func mergeValueMustBeMappings() {
        expectError("m:\n  <<: 1\n", at: 2, 7, "the merge key `<<` takes a mapping or a list of mappings")
        expectError("a: &a {x: 1}\nm:\n  <<: [*a, [1]]\n", at: 3, 12, "this item is a sequence")
    }

    @Test func quotedMergeKeyIsAnOrdinaryKey() throws {
        let root = try parse("m:\n  '<<': 1\n")
        #expect(root["m"]?["<<"]?.scalar == "1")
    }
}
