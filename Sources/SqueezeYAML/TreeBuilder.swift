import CYAML

/// Builds a `YAMLNode` tree from libyaml events, one event at a time.
///
/// It owns every rule the event stream does not enforce by itself: one
/// document, scalar keys, no duplicate keys, merge keys, alias expansion
/// within a node budget, and a nesting limit.
///
/// Aliases expand to copies of the anchored node. The copy's root node is
/// located at the alias (`*name`) so that errors about the value as a whole
/// point where it is used; nodes inside the copy keep the positions where
/// they were written, under the anchor. Copies share storage (arrays are
/// copy-on-write), so expansion costs no memory until someone mutates them.
struct TreeBuilder {
    /// A finished node with what the limits need to know about it.
    private struct Built {
        var node: YAMLNode
        /// Nodes in the subtree, counting expanded aliases.
        var size: Int
        /// Levels of collections in the subtree (0 for a scalar).
        var height: Int
    }

    private enum FrameKind { case sequence, mapping }

    /// An open sequence or mapping.
    private struct Frame {
        var kind: FrameKind
        var location: SourceLocation
        var tag: String?
        var anchor: String?
        var items: [YAMLNode] = []
        var mapping = MappingBuilder()
        var size = 1
        var height = 1
    }

    private let limits: YAMLLimits
    private var frames: [Frame] = []
    private var anchors: [String: Built] = [:]
    private var expandedNodes = 0
    private var documents = 0
    private var root: YAMLNode?

    init(limits: YAMLLimits) {
        self.limits = limits
    }

    /// The document's root, or nil when there was no document or it is empty.
    var result: YAMLNode? {
        guard let root else { return nil }
        if case .scalar("", .plain) = root.kind, root.tag == nil { return nil }
        return root
    }

    /// Consumes one event; returns true at the end of the stream.
    mutating func consume(_ event: yaml_event_t, in source: SourceText) throws(Diagnostic) -> Bool {
        let location = source.location(
            line: Int(clamping: event.start_mark.line), column: Int(clamping: event.start_mark.column))
        switch event.type {
        case YAML_STREAM_END_EVENT:
            return true
        case YAML_DOCUMENT_START_EVENT:
            documents += 1
            if documents > 1 {
                throw Diagnostic(
                    "a recipe must be a single YAML document",
                    at: location,
                    hint: "remove the `---` separator, or split the documents into separate files")
            }
        case YAML_ALIAS_EVENT:
            try alias(Self.string(event.data.alias.anchor) ?? "", at: location)
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            let text: String
            if let value = scalar.value {
                text = String(decoding: UnsafeBufferPointer(start: value, count: scalar.length), as: UTF8.self)
            } else {
                text = ""
            }
            let node = YAMLNode(.scalar(text, Self.style(scalar.style)), at: location, tag: Self.tag(scalar.tag))
            let built = Built(node: node, size: 1, height: 0)
            if let anchor = Self.string(scalar.anchor) { anchors[anchor] = built }
            try insert(built)
        case YAML_SEQUENCE_START_EVENT:
            let start = event.data.sequence_start
            try open(.sequence, at: location, tag: Self.tag(start.tag), anchor: Self.string(start.anchor))
        case YAML_MAPPING_START_EVENT:
            let start = event.data.mapping_start
            try open(.mapping, at: location, tag: Self.tag(start.tag), anchor: Self.string(start.anchor))
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            try close()
        default:
            break
        }
        return false
    }

    private mutating func open(_ kind: FrameKind, at location: SourceLocation, tag: String?, anchor: String?) throws(Diagnostic) {
        if let parent = frames.last, parent.kind == .mapping, parent.mapping.expectsKey {
            throw Diagnostic(
                "mapping keys must be scalars",
                at: location,
                hint: "a key is a single name or value; quote it if it contains `[`, `{` or `? `")
        }
        if frames.count >= limits.maxDepth {
            throw Diagnostic("nesting is too deep (more than \(limits.maxDepth) levels)", at: location)
        }
        frames.append(Frame(kind: kind, location: location, tag: tag, anchor: anchor))
    }

    private mutating func close() throws(Diagnostic) {
        // libyaml only emits balanced start/end events.
        guard let frame = frames.popLast() else { return }
        let kind: YAMLNode.Kind =
            switch frame.kind {
            case .sequence: .sequence(frame.items)
            case .mapping: .mapping(frame.mapping.entries())
            }
        let built = Built(node: YAMLNode(kind, at: frame.location, tag: frame.tag), size: frame.size, height: frame.height)
        if let anchor = frame.anchor { anchors[anchor] = built }
        try insert(built)
    }

    private mutating func alias(_ name: String, at location: SourceLocation) throws(Diagnostic) {
        if frames.contains(where: { $0.anchor == name }) {
            throw Diagnostic(
                "alias `*\(name)` refers to a node that contains it; recursive aliases are not supported",
                at: location)
        }
        guard let anchored = anchors[name] else {
            throw Diagnostic(
                "undefined alias `*\(name)`",
                at: location,
                hint: Suggestion.hint(for: name, in: anchors.keys)
                    ?? "define the anchor with `&\(name)` on a node before this alias")
        }
        let (total, overflow) = expandedNodes.addingReportingOverflow(anchored.size)
        if overflow || total > limits.maxAliasExpansion {
            throw Diagnostic(
                "alias expansion exceeds the limit of \(limits.maxAliasExpansion) nodes at `*\(name)`",
                at: location,
                hint: "aliases here expand to too many copies (a \"billion laughs\" document?); write the values out or reuse less")
        }
        expandedNodes = total
        if frames.count + anchored.height > limits.maxDepth {
            throw Diagnostic(
                "nesting is too deep (more than \(limits.maxDepth) levels) once `*\(name)` is expanded",
                at: location)
        }
        var copy = anchored
        copy.node.location = location
        try insert(copy)
    }

    /// Adds a finished node to the open collection, or makes it the root.
    private mutating func insert(_ built: Built) throws(Diagnostic) {
        guard let last = frames.indices.last else {
            root = built.node
            return
        }
        let (size, overflow) = frames[last].size.addingReportingOverflow(built.size)
        frames[last].size = overflow ? .max : size
        frames[last].height = max(frames[last].height, built.height + 1)
        switch frames[last].kind {
        case .sequence: frames[last].items.append(built.node)
        case .mapping: try frames[last].mapping.add(built.node)
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    /// Tags as written in the short form: `!!str` rather than `tag:yaml.org,2002:str`.
    private static func tag(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let tag = string(pointer) else { return nil }
        let core = "tag:yaml.org,2002:"
        return tag.hasPrefix(core) ? "!!" + tag.dropFirst(core.count) : tag
    }

    private static func style(_ style: yaml_scalar_style_t) -> ScalarStyle {
        switch style {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: .singleQuoted
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: .doubleQuoted
        case YAML_LITERAL_SCALAR_STYLE: .literal
        case YAML_FOLDED_SCALAR_STYLE: .folded
        default: .plain
        }
    }
}

/// The entries of one mapping as its events arrive: duplicate keys and merge keys.
struct MappingBuilder {
    private enum Item {
        case entry(YAMLNode.Entry)
        /// The mappings of a `<<` value, earliest first.
        case merge([[YAMLNode.Entry]])
    }

    private enum PendingKey {
        case key(YAMLNode)
        case merge
    }

    private var items: [Item] = []
    private var pendingKey: PendingKey?
    /// Explicit keys by resolved value, with where each was first written.
    private var explicitKeys: [KeyIdentity: SourceLocation] = [:]
    private var mergeKeyLocation: SourceLocation?

    var expectsKey: Bool { pendingKey == nil }

    mutating func add(_ node: YAMLNode) throws(Diagnostic) {
        switch pendingKey {
        case nil:
            try addKey(node)
        case .key(let key)?:
            pendingKey = nil
            items.append(.entry(YAMLNode.Entry(key: key, value: node)))
        case .merge?:
            pendingKey = nil
            items.append(.merge(try Self.mergeSources(node)))
        }
    }

    private mutating func addKey(_ key: YAMLNode) throws(Diagnostic) {
        guard case .scalar(let text, let style) = key.kind else {
            throw Diagnostic(
                "mapping keys must be scalars",
                at: key.location,
                hint: "this alias refers to \(key.kindDescription); a key is a single name or value")
        }
        if text == "<<", style == .plain, key.tag == nil || key.tag == "!!merge" {
            if let first = mergeKeyLocation {
                throw Diagnostic(
                    "duplicate key `<<` (first defined at line \(first.line))",
                    at: key.location,
                    hint: "merge several mappings with one key: `<<: [*first, *second]`")
            }
            mergeKeyLocation = key.location
            pendingKey = .merge
            return
        }
        let identity = KeyIdentity(key)
        if let first = explicitKeys[identity] {
            throw Diagnostic("duplicate key `\(text)` (first defined at line \(first.line))", at: key.location)
        }
        explicitKeys[identity] = key.location
        pendingKey = .key(key)
    }

    /// The mappings a `<<` value brings in: one mapping, or a list of them.
    private static func mergeSources(_ value: YAMLNode) throws(Diagnostic) -> [[YAMLNode.Entry]] {
        switch value.kind {
        case .mapping(let entries):
            return [entries]
        case .sequence(let items):
            var sources: [[YAMLNode.Entry]] = []
            for item in items {
                guard case .mapping(let entries) = item.kind else {
                    throw Diagnostic(
                        "the merge key `<<` takes a list of mappings, but this item is \(item.kindDescription)",
                        at: item.location)
                }
                sources.append(entries)
            }
            return sources
        case .scalar:
            throw Diagnostic(
                "the merge key `<<` takes a mapping or a list of mappings, not a scalar",
                at: value.location,
                hint: "write `<<: *name` where `&name` marks a mapping")
        }
    }

    /// The final entries in source order. Merged entries take the place of
    /// their `<<` key; keys written explicitly anywhere in the mapping win over
    /// merged ones, and earlier merge sources win over later ones (YAML 1.1).
    func entries() -> [YAMLNode.Entry] {
        var result: [YAMLNode.Entry] = []
        result.reserveCapacity(items.count)
        var seen = Set(explicitKeys.keys)
        for item in items {
            switch item {
            case .entry(let entry):
                result.append(entry)
            case .merge(let sources):
                for entry in sources.joined() where seen.insert(KeyIdentity(entry.key)).inserted {
                    result.append(entry)
                }
            }
        }
        return result
    }
}

/// A scalar key compared by its resolved value, so `1` and `0x1` (or `true`
/// and `True`) are the same key while `1` and `"1"` are not.
struct KeyIdentity: Hashable {
    private enum Value: Hashable {
        case null, bool(Bool), int(Int), double(Double), nan, string(String)
    }

    private let value: Value

    init(_ key: YAMLNode) {
        switch YAMLScalar.resolve(key) {
        case .null: value = .null
        case .bool(let b): value = .bool(b)
        case .int(let i): value = .int(i)
        case .double(let d): value = d.isNaN ? .nan : .double(d)
        case .string(let s): value = .string(s)
        }
    }
}
