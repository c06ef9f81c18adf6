import SqueezeRecipe

extension Value {
    /// The value as a number, when it is an integer or a double.
    var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

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
