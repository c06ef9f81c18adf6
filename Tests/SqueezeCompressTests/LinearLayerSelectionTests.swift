import SqueezeCompress
import SqueezeModels
import SqueezeModelsTestSupport
import Testing

@Suite struct LinearLayerSelectionTests {
    @Test func includeAndSkipGlobsSelectBlockLayersInModelOrder() throws {
        let model = try TinyBert.model()
        let all = try LinearLayerSelection(model: model)
        #expect(all.names.count == 12)
        #expect(all.names == model.linearBlocks.flatMap(\.layers).map(\.name))
        #expect(!all.names.contains("classifier") && !all.names.contains("pooler.dense"))

        let firstLayer = try LinearLayerSelection(model: model, include: ["layer.0"])
        #expect(firstLayer.names.allSatisfy { $0.hasPrefix("encoder.layer.0.") } && firstLayer.names.count == 6)

        let ffn = try LinearLayerSelection(model: model, include: ["encoder.*.intermediate.dense", "output.dense"], skip: ["layer.1"])
        #expect(ffn.names == ["encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense"])

        let noQuery = try LinearLayerSelection(model: model, skip: ["query"])
        #expect(noQuery.names.count == 10 && !noQuery.names.contains { $0.hasSuffix("query") })
    }

    @Test func anEmptySelectionIsAnErrorAndAPatternThatMatchesNothingAWarning() throws {
        let model = try TinyBert.model()
        #expect(throws: LinearViewError.self) { try LinearLayerSelection(model: model, include: ["classifier"]) }
        #expect(throws: LinearViewError.self) { try LinearLayerSelection(model: model, skip: ["*"]) }
        let typo = try LinearLayerSelection(model: model, include: ["layer.0", "qeury"])
        #expect(typo.names.allSatisfy { $0.hasPrefix("encoder.layer.0.") } && !typo.names.isEmpty)
        #expect(typo.warnings.count == 1 && typo.warnings[0].hasPrefix("include pattern `qeury` matches no linear layer"), "\(typo.warnings)")
        let skipNothing = try LinearLayerSelection(model: model, include: ["layer.0"], skip: ["layer.1"])
        #expect(skipNothing.warnings == ["skip pattern `layer.1` matches none of the included layers"], "\(skipNothing.warnings)")
        #expect(try LinearLayerSelection(model: model).warnings.isEmpty)
    }

    @Test func prunedAwayLayersAreNotCandidates() throws {
        let model = try TinyBert.model(layerShapes: [
            BertLayerShape(heads: 0, intermediateSize: 16), BertLayerShape(heads: 2, intermediateSize: 0),
        ])
        let selection = try LinearLayerSelection(model: model)
        #expect(selection.names.count == 6)
        #expect(throws: LinearViewError.self) { try LinearLayerSelection(model: model, include: ["layer.0.*.query"]) }
    }
}
