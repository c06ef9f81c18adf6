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
