import SqueezeModels
import SqueezeTensor

/// A `skip` pattern over Linear module names. `*` matches any characters
/// (dots included), `?` exactly one; the pattern must match, in full, a run
/// of consecutive dot-separated components of the name. So `classifier`
/// matches `classifier`, `pooler` matches `pooler.dense`, `query` every
/// layer's `…attention.self.query`, `layer.0.*` and `layer.0` every module of
/// layer 0 (but not of layer 10), and `encoder.*.intermediate.dense` every
/// FFN input projection.
public struct ModulePattern: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    private let pattern: [Character]

    public init(_ text: String) {
        self.text = text
        self.pattern = Array(text)
    }

    public var description: String { text }

    public func matches(_ module: String) -> Bool {
        let components = module.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for start in components.indices {
            for end in start..<components.count where Self.glob(pattern, Array(components[start...end].joined(separator: "."))) {
                return true
            }
        }
        return false
    }

    /// Full-string glob match, `*` and `?` wildcards (iterative, with backtracking to the last star).
    static func glob(_ pattern: [Character], _ text: [Character]) -> Bool {
        var (p, t) = (0, 0)
        var star: Int?
        var resume = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                star = p
                resume = t
                p += 1
            } else if let starAt = star {
                p = starAt + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}

/// Which Linear modules of a model a quantization covers: all of them but
/// those matched by a `skip` pattern, the empty ones (a pruned layer with no
/// heads or no FFN units has `[0, in]` or `[out, 0]` weights) and the pooler
/// when the model pools by mean (the forward pass never runs it).
public struct ModuleSelection: Sendable, Hashable {
    /// The modules to quantize, in model order.
    public var quantized: [String]
    /// The modules kept in f32, in model order, with the reason.
    public var skipped: [ModelQuantization.SkippedModule]
    /// Skip patterns that matched no Linear module (a likely typo).
    public var unmatchedPatterns: [String]
    /// Every Linear module of the model.
    public var modules: [String]

    public init(model: BertModel, skip: [String]) {
        let patterns = skip.map(ModulePattern.init)
        var matched = Set<String>()
        var quantized: [String] = []
        var skipped: [ModelQuantization.SkippedModule] = []
        let shapes = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.tensor.shape) })
        let modules = model.weights.linearModules
        for module in modules {
            let hits = patterns.filter { $0.matches(module) }
            matched.formUnion(hits.map(\.text))
            if let first = hits.first {
                skipped.append(.init(module: module, reason: "skip pattern `\(first.text)`"))
            } else if (shapes[module + ".weight"] ?? []).contains(0) {
                skipped.append(.init(module: module, reason: "empty weight \(shapes[module + ".weight"] ?? []) (pruned away)"))
            } else if module == "pooler.dense" && model.pooling == .mean {
                skipped.append(.init(module: module, reason: "unused: the model pools by mean"))
            } else {
                quantized.append(module)
            }
        }
        self.quantized = quantized
        self.skipped = skipped
        self.unmatchedPatterns = skip.filter { !matched.contains($0) }
        self.modules = modules
    }
}
