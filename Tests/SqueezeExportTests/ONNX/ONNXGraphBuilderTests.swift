import Foundation
import SqueezeExport
import SqueezeONNXProto
import SwiftProtobuf
import Testing

@Suite struct ONNXGraphBuilderTests {
    /// y = x · Wᵀ + b over a dynamic batch, built by the builder: ONNX's checker
    /// accepts it and ONNX Runtime computes what plain Swift computes.
    static func linearModel() -> (model: Onnx_ModelProto, weights: [Float], bias: [Float]) {
        let weights: [Float] = [0.5, -1.25, 2, 0.75, 3, -0.5]  // [out 2, in 3]
        let bias: [Float] = [0.125, -2]
        var builder = ONNXGraphBuilder(name: "linear")
        builder.addInput("x", .float, [.symbolic("batch"), .fixed(3)])
        let w = builder.addInitializer("w", floats: weights, shape: [2, 3])
        let b = builder.addInitializer("b", floats: bias, shape: [2])
        let wt = builder.add("Transpose", [w], name: "wt", attributes: [.ints("perm", [1, 0])])
        let product = builder.add("MatMul", ["x", wt], name: "product")
        builder.addNode("Add", inputs: [product, b], outputs: ["y"])
        builder.addOutput("y", .float, [.symbolic("batch"), .fixed(2)])
        return (builder.model(opset: ONNXOpset.default, producerVersion: "test"), weights, bias)
    }

    @Test func uniqueNamesNeverRepeat() {
        var builder = ONNXGraphBuilder(name: "g")
        builder.addInput("x", .float, [.fixed(1)])
        let names = [builder.uniqueName("x"), builder.uniqueName("x"), builder.uniqueName("y"), builder.uniqueName("y")]
        #expect(names == ["x_1", "x_2", "y", "y_1"])
    }

    @Test func serializationIsDeterministic() throws {
        let first = try Self.linearModel().model.serializedBytes()
        let second = try Self.linearModel().model.serializedBytes()
        #expect(first == second)
        let decoded = try Onnx_ModelProto(serializedBytes: first)
        #expect(decoded.irVersion == 8)
        #expect(decoded.opsetImport.first?.version == 17)
        #expect(decoded.graph.initializer.map(\.name) == ["w", "b"])
    }

    @Test(.enabled(if: PythonPeers.available(ONNXRuntimePeer.modules, for: "ONNXGraphBuilderTests")))
    func onnxRuntimeRunsTheBuiltGraph() throws {
        let (model, weights, bias) = Self.linearModel()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-builder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("linear.onnx")
        try model.serializedBytes().write(to: file)
        var runs: [[String: ONNXRuntimePeer.Tensor]] = []
        var expected: [[Float]] = []
        for batch in [1, 4] {
            let x = (0..<(batch * 3)).map { Float($0) * 0.25 - 1 }
            runs.append(["x": .float32(x, shape: [batch, 3])])
            var rows: [Float] = []
            for row in 0..<batch {
                for out in 0..<2 {
                    var sum = bias[out]
                    for k in 0..<3 { sum += x[row * 3 + k] * weights[out * 3 + k] }
                    rows.append(sum)
                }
            }
            expected.append(rows)
        }
        let report = try ONNXRuntimePeer.run(model: file, runs)
        #expect(report.opset == 17)
        for (run, want) in zip(report.runs, expected) {
            let got = try #require(run.outputs["y"])
            #expect(got.shape == [want.count / 2, 2])
            for (a, b) in zip(got.floats, want) { #expect(abs(a - b) <= 1e-5) }
        }
    }
}
