/// How a scalar was written; quoted and block scalars are always strings.
public enum ScalarStyle: Sendable, Hashable {
    case plain, singleQuoted, doubleQuoted, literal, folded
}

/// One node of a parsed YAML document, with the position it came from.
///
/// Aliases are already expanded (within the parser's budget), so the tree is
/// plain data. An expanded copy's root is located at the alias (`*name`);
/// the nodes inside it keep the positions where they were written under the
/// anchor. Merge keys (`<<`) are already applied. Mapping entries keep their source order; duplicate keys are
/// rejected by the parser.
public struct YAMLNode: Sendable, Hashable {
    public indirect enum Kind: Sendable, Hashable {
        case scalar(String, ScalarStyle)
        case sequence([YAMLNode])
        case mapping([Entry])
    }

    public struct Entry: Sendable, Hashable {
        public var key: YAMLNode
        public var value: YAMLNode
        public init(key: YAMLNode, value: YAMLNode) {
            self.key = key
            self.value = value
        }
    }

    public var kind: Kind
    public var location: SourceLocation
    /// An explicit tag such as `!!str`, if one was written.
    public var tag: String?

    public init(_ kind: Kind, at location: SourceLocation, tag: String? = nil) {
        self.kind = kind
        self.location = location
        self.tag = tag
    }

    /// The scalar text, if this is a scalar.
    public var scalar: String? {
        if case .scalar(let text, _) = kind { return text }
        return nil
    }

    /// The entries, if this is a mapping.
    public var entries: [Entry]? {
        if case .mapping(let entries) = kind { return entries }
        return nil
    }

    /// The items, if this is a sequence.
    public var items: [YAMLNode]? {
        if case .sequence(let items) = kind { return items }
        return nil
    }

    /// The value for a scalar key in a mapping.
    public subscript(key: String) -> YAMLNode? {
        entries?.first { $0.key.scalar == key }?.value
    }

    /// A short name of the node's kind for error messages ("a mapping").
    public var kindDescription: String {
        switch kind {
        case .scalar: "a scalar"
        case .sequence: "a sequence"
        case .mapping: "a mapping"
        }
    }
}
