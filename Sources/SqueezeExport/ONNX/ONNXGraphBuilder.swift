import Foundation
import SqueezeONNXProto
import SwiftProtobuf

/// An ONNX tensor element type (`TensorProto.DataType`), the ones exports use.
public enum ONNXElementType: Int32, Sendable, Hashable {
    case float = 1
    case uint8 = 2
    case int8 = 3
    case int32 = 6
    case int64 = 7
    case bool = 9
    /// Signed 4-bit integers, two per byte (opset 21).
    case int4 = 22
}

/// One axis of a graph input or output: a fixed size or a named symbolic one
/// (`batch`, `sequence`), which is what makes the axis dynamic for runtimes.
public enum ONNXDimension: Sendable, Hashable {
    case fixed(Int)
    case symbolic(String)
}

/// A node attribute.
public enum ONNXAttribute: Sendable, Hashable {
    case int(String, Int)
    case ints(String, [Int])
    case float(String, Float)
    case string(String, String)
}

/// The opsets exports are written for: `LayerNormalization` needs 17; the
/// newest is what the pinned `onnx.proto` (ONNX 1.23) and ONNX Runtime 1.2x
/// both know.
public enum ONNXOpset {
    public static let minimum = 17
    public static let maximum = 21
    public static let `default` = 17
    /// The opsets an export can be written at.
    public static let supported = minimum...maximum

    /// The IR version a model of `opset` declares (ONNX's versioning table:
    /// opset 17 → IR 8, 18 → 8, 19/20 → 9, 21 → 10).
    public static func irVersion(for opset: Int) -> Int64 {
        switch opset {
        case ...18: 8
        case 19...20: 9
        default: 10
        }
    }
}

/// Builds one ONNX graph: inputs, outputs, initializers and nodes in
/// topological order, with unique value names. Initializers are stored as
/// little-endian `raw_data`, so a model file holds weights as compactly as
/// safetensors does.
public struct ONNXGraphBuilder: Sendable {
    private var graph = Onnx_GraphProto()
    private var usedNames: Set<String> = []
    private var counters: [String: Int] = [:]

    public init(name: String) {
        graph.name = name
    }

    /// A value name not used yet, `prefix` itself when free, else `prefix_1`, `prefix_2`, ….
    public mutating func uniqueName(_ prefix: String) -> String {
        if usedNames.insert(prefix).inserted { return prefix }
        var index = counters[prefix, default: 0]
        while true {
            index += 1
            let candidate = "\(prefix)_\(index)"
            if usedNames.insert(candidate).inserted {
                counters[prefix] = index
                return candidate
            }
        }
    }

    public mutating func addInput(_ name: String, _ type: ONNXElementType, _ shape: [ONNXDimension]) {
        usedNames.insert(name)
        graph.input.append(Self.valueInfo(name, type, shape))
    }

    public mutating func addOutput(_ name: String, _ type: ONNXElementType, _ shape: [ONNXDimension]) {
        graph.output.append(Self.valueInfo(name, type, shape))
    }

    /// A constant tensor; returns its (unique) name.
    @discardableResult
    public mutating func addInitializer(_ name: String, floats: [Float], shape: [Int]) -> String {
        addRaw(name, .float, shape: shape, count: floats.count) { floats.withUnsafeBytes { Data($0) } }
    }

    @discardableResult
    public mutating func addInitializer(_ name: String, int8s: [Int8], shape: [Int]) -> String {
        addRaw(name, .int8, shape: shape, count: int8s.count) { int8s.withUnsafeBytes { Data($0) } }
    }

    @discardableResult
    public mutating func addInitializer(_ name: String, uint8s: [UInt8], shape: [Int]) -> String {
        addRaw(name, .uint8, shape: shape, count: uint8s.count) { Data(uint8s) }
    }

    /// Signed 4-bit values already packed two per byte, the first element of
    /// each pair in the low nibble (ONNX's INT4 `raw_data` layout).
    @discardableResult
    public mutating func addInitializer(_ name: String, int4Packed bytes: [UInt8], shape: [Int]) -> String {
        let count = shape.reduce(1, *)
        precondition(bytes.count == (count + 1) / 2, "initializer \(name): \(bytes.count) bytes for \(count) int4 values")
        return addRaw(name, .int4, shape: shape, count: count) { Data(bytes) }
    }

    @discardableResult
    public mutating func addInitializer(_ name: String, int32s: [Int32], shape: [Int]) -> String {
        addRaw(name, .int32, shape: shape, count: int32s.count) { int32s.withUnsafeBytes { Data($0) } }
    }

    @discardableResult
    public mutating func addInitializer(_ name: String, int64s: [Int64], shape: [Int]) -> String {
        addRaw(name, .int64, shape: shape, count: int64s.count) { int64s.withUnsafeBytes { Data($0) } }
    }

    /// Appends a node; `outputs` are the names it defines (make them with
    /// `uniqueName`). Returns `outputs` so a call can feed the next one.
    @discardableResult
    public mutating func addNode(
        _ opType: String, inputs: [String], outputs: [String], attributes: [ONNXAttribute] = [], domain: String = ""
    ) -> [String] {
        var node = Onnx_NodeProto()
        node.opType = opType
        node.input = inputs
        node.output = outputs
        node.name = uniqueName("\(opType)_node")
        if !domain.isEmpty { node.domain = domain }
        node.attribute = attributes.map(Self.attribute)
        for output in outputs { usedNames.insert(output) }
        graph.node.append(node)
        return outputs
    }

    /// A node with one output named from `prefix`; returns that name.
    public mutating func add(
        _ opType: String, _ inputs: [String], name prefix: String, attributes: [ONNXAttribute] = [], domain: String = ""
    ) -> String {
        let output = uniqueName(prefix)
        addNode(opType, inputs: inputs, outputs: [output], attributes: attributes, domain: domain)
        return output
    }

    /// The finished model: `opset` of the default domain (plus `extraDomains`,
    /// e.g. `["com.microsoft": 1]`), the IR version that opset needs, and the
    /// producer's name and version.
    public func model(
        opset: Int, producerVersion: String, docString: String = "", extraDomains: [String: Int] = [:],
        metadata: [String: String] = [:]
    ) -> Onnx_ModelProto {
        var model = Onnx_ModelProto()
        model.irVersion = ONNXOpset.irVersion(for: opset)
        model.producerName = "squeeze"
        model.producerVersion = producerVersion
        if !docString.isEmpty { model.docString = docString }
        var defaultDomain = Onnx_OperatorSetIdProto()
        defaultDomain.domain = ""
        defaultDomain.version = Int64(opset)
        model.opsetImport = [defaultDomain]
        for (domain, version) in extraDomains.sorted(by: { $0.key < $1.key }) {
            var entry = Onnx_OperatorSetIdProto()
            entry.domain = domain
            entry.version = Int64(version)
            model.opsetImport.append(entry)
        }
        model.metadataProps = metadata.sorted(by: { $0.key < $1.key }).map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        model.graph = graph
        return model
    }

    /// The number of nodes so far (tests and reports).
    public var nodeCount: Int { graph.node.count }

    private mutating func addRaw(
        _ prefix: String, _ type: ONNXElementType, shape: [Int], count: Int, bytes: () -> Data
    ) -> String {
        precondition(shape.reduce(1, *) == count, "initializer \(prefix): \(count) values for shape \(shape)")
        let name = uniqueName(prefix)
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = type.rawValue
        tensor.dims = shape.map(Int64.init)
        tensor.rawData = bytes()
        graph.initializer.append(tensor)
        return name
    }

    private static func valueInfo(_ name: String, _ type: ONNXElementType, _ shape: [ONNXDimension]) -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = type.rawValue
        var tensorShape = Onnx_TensorShapeProto()
        tensorShape.dim = shape.map { dimension in
            var dim = Onnx_TensorShapeProto.Dimension()
            switch dimension {
            case .fixed(let size): dim.dimValue = Int64(size)
            case .symbolic(let name): dim.dimParam = name
            }
            return dim
        }
        tensorType.shape = tensorShape
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensorType
        return info
    }

    private static func attribute(_ attribute: ONNXAttribute) -> Onnx_AttributeProto {
        var proto = Onnx_AttributeProto()
        switch attribute {
        case .int(let name, let value):
            proto.name = name
            proto.type = .int
            proto.i = Int64(value)
        case .ints(let name, let values):
            proto.name = name
            proto.type = .ints
            proto.ints = values.map(Int64.init)
        case .float(let name, let value):
            proto.name = name
            proto.type = .float
            proto.f = value
        case .string(let name, let value):
            proto.name = name
            proto.type = .string
            proto.s = Data(value.utf8)
        }
        return proto
    }
}

extension Onnx_ModelProto {
    /// The model's bytes, deterministic for the same graph: fields in field
    /// order, map-free messages only (ONNX has none), so the same model
    /// always serializes to the same bytes and hashes to the same digest.
    public func serializedBytes() throws -> Data {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return try serializedBytes(options: options)
    }
}
