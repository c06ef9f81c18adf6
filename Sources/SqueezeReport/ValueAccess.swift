import SqueezeSupport

extension Value {
    var string: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The member `key` of an object.
    subscript(member key: String) -> Value? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }
}

extension Value {
    var integer: Int? {
        if case .int(let value) = self { return value }
        return nil
    }

    var boolean: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var items: [Value]? {
        if case .array(let items) = self { return items }
        return nil
    }
}
