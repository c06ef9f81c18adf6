import Foundation

/// Encodes `Encodable` types as `Value`, the first half of `SqueezeJSON`'s
/// Codable → `Value` → text.
///
/// - `Int`s and the other integer types become `.int` (an unsigned value
///   above `Int.max` is an error: JSON text would keep it, `Value` cannot);
///   `Double` becomes `.double`, and `Float` the double of its shortest
///   decimal form (`0.1` stays `0.1`).
/// - `Date` becomes an ISO 8601 string with fractional seconds
///   (`2026-12-07T08:27:24.123Z`), `URL` its absolute string, `Value` itself.
/// - A `nil` optional property is left out, as `JSONEncoder` does.
public struct ValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> Value {
        try ValueEncoding.slot(for: value, at: []).value
    }
}

/// Decodes `Decodable` types from `Value`, the second half of `SqueezeJSON`.
///
/// The reverse of `ValueEncoder`, and lenient where older files need it: an
/// integer reads as a `Double` (files written by `JSONEncoder` wrote `3.0`
/// as `3`); a double with an integer value up to 2^53 in magnitude (where
/// doubles are exact) reads as an integer type;
/// `"nan"`, `"inf"` and `"-inf"` (which `JSONText` writes for doubles JSON
/// lacks) read as a `Double` or `Float`; dates with or without fractional seconds.
public struct ValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: Value) throws -> T {
        try ValueDecoding.unbox(value, as: T.self, at: [])
    }
}

/// ISO 8601 dates as Squeeze writes and reads them.
public enum ISO8601Dates {
    public static func string(from date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// With or without fractional seconds.
    public static func date(from text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }
}

// MARK: - Encoding

/// A value under construction: containers are shared boxes, so nested
/// containers can keep writing into them after they were handed out.
private enum Slot {
    case value(Value)
    case object(ObjectBox)
    case array(ArrayBox)

    var value: Value {
        switch self {
        case .value(let value): value
        case .object(let box): .object(box.fields.mapValues(\.value))
        case .array(let box): .array(box.items.map(\.value))
        }
    }
}

private final class ObjectBox {
    var fields: [String: Slot] = [:]
}

private final class ArrayBox {
    var items: [Slot] = []
}

private final class ValueEncoding: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var slot: Slot?

    init(codingPath: [any CodingKey]) {
        self.codingPath = codingPath
    }

    /// The slot of one value: scalars and the types with a fixed JSON form
    /// directly, everything else through its `encode(to:)`.
    static func slot<T: Encodable>(for value: T, at path: [any CodingKey]) throws -> Slot {
        if let scalar = try scalar(value, at: path) { return .value(scalar) }
        let encoder = ValueEncoding(codingPath: path)
        try value.encode(to: encoder)
        return encoder.slot ?? .object(ObjectBox())
    }

    private static func scalar<T: Encodable>(_ value: T, at path: [any CodingKey]) throws -> Value? {
        switch value {
        case let value as Value: return value
        case let value as Bool: return .bool(value)
        case let value as String: return .string(value)
        case let value as Double: return .double(value)
        case let value as Float: return .double(value.isFinite ? Double("\(value)") ?? Double(value) : Double(value))
        case let value as Int: return .int(value)
        case let value as Int8: return .int(Int(value))
        case let value as Int16: return .int(Int(value))
        case let value as Int32: return .int(Int(value))
        case let value as Int64: return .int(Int(value))
        case let value as UInt8: return .int(Int(value))
        case let value as UInt16: return .int(Int(value))
        case let value as UInt32: return .int(Int(value))
        case let value as UInt: return try integer(value, at: path)
        case let value as UInt64: return try integer(value, at: path)
        case let value as Date: return .string(ISO8601Dates.string(from: value))
        case let value as URL: return .string(value.absoluteString)
        default: return nil
        }
    }

    private static func integer<I: BinaryInteger>(_ value: I, at path: [any CodingKey]) throws -> Value {
        guard let exact = Int(exactly: value) else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: path, debugDescription: "\(value) is beyond the integer range of a JSON value (Int)"))
        }
        return .int(exact)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: ObjectBox
        if case .object(let existing) = slot {
            box = existing
        } else {
            box = ObjectBox()
            slot = .object(box)
        }
        return KeyedEncodingContainer(KeyedValueEncodingContainer<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let box: ArrayBox
        if case .array(let existing) = slot {
            box = existing
        } else {
            box = ArrayBox()
            slot = .array(box)
        }
        return UnkeyedValueEncodingContainer(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueEncodingContainerImpl(encoder: self)
    }
}

private struct KeyedValueEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: ObjectBox
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { box.fields[key.stringValue] = .value(.null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: String, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try put(value, key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try put(value, key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try put(value, key) }

    private func put<T: Encodable>(_ value: T, _ key: Key) throws {
        box.fields[key.stringValue] = try ValueEncoding.slot(for: value, at: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectBox()
        box.fields[key.stringValue] = .object(nested)
        return KeyedEncodingContainer(KeyedValueEncodingContainer<NestedKey>(box: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = ArrayBox()
        box.fields[key.stringValue] = .array(nested)
        return UnkeyedValueEncodingContainer(box: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        SuperEncoder(codingPath: codingPath + [ValueCodingKey("super")]) { [box] slot in box.fields["super"] = slot }
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        SuperEncoder(codingPath: codingPath + [key]) { [box] slot in box.fields[key.stringValue] = slot }
    }
}

private struct UnkeyedValueEncodingContainer: UnkeyedEncodingContainer {
    let box: ArrayBox
    let codingPath: [any CodingKey]
    var count: Int { box.items.count }

    private var nextPath: [any CodingKey] { codingPath + [ValueCodingKey(index: box.items.count)] }

    mutating func encodeNil() throws { box.items.append(.value(.null)) }
    mutating func encode(_ value: Bool) throws { try put(value) }
    mutating func encode(_ value: String) throws { try put(value) }
    mutating func encode(_ value: Double) throws { try put(value) }
    mutating func encode(_ value: Float) throws { try put(value) }
    mutating func encode(_ value: Int) throws { try put(value) }
    mutating func encode(_ value: Int8) throws { try put(value) }
    mutating func encode(_ value: Int16) throws { try put(value) }
    mutating func encode(_ value: Int32) throws { try put(value) }
    mutating func encode(_ value: Int64) throws { try put(value) }
    mutating func encode(_ value: UInt) throws { try put(value) }
    mutating func encode(_ value: UInt8) throws { try put(value) }
    mutating func encode(_ value: UInt16) throws { try put(value) }
    mutating func encode(_ value: UInt32) throws { try put(value) }
    mutating func encode(_ value: UInt64) throws { try put(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try put(value) }

    private func put<T: Encodable>(_ value: T) throws {
        box.items.append(try ValueEncoding.slot(for: value, at: nextPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = nextPath
        let nested = ObjectBox()
        box.items.append(.object(nested))
        return KeyedEncodingContainer(KeyedValueEncodingContainer<NestedKey>(box: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        let nested = ArrayBox()
        box.items.append(.array(nested))
        return UnkeyedValueEncodingContainer(box: nested, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let index = box.items.count
        box.items.append(.value(.null))
        return SuperEncoder(codingPath: nextPath) { [box] slot in box.items[index] = slot }
    }
}

private struct SingleValueEncodingContainerImpl: SingleValueEncodingContainer {
    let encoder: ValueEncoding
    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { encoder.slot = .value(.null) }
    mutating func encode(_ value: Bool) throws { try put(value) }
    mutating func encode(_ value: String) throws { try put(value) }
    mutating func encode(_ value: Double) throws { try put(value) }
    mutating func encode(_ value: Float) throws { try put(value) }
    mutating func encode(_ value: Int) throws { try put(value) }
    mutating func encode(_ value: Int8) throws { try put(value) }
    mutating func encode(_ value: Int16) throws { try put(value) }
    mutating func encode(_ value: Int32) throws { try put(value) }
    mutating func encode(_ value: Int64) throws { try put(value) }
    mutating func encode(_ value: UInt) throws { try put(value) }
    mutating func encode(_ value: UInt8) throws { try put(value) }
    mutating func encode(_ value: UInt16) throws { try put(value) }
    mutating func encode(_ value: UInt32) throws { try put(value) }
    mutating func encode(_ value: UInt64) throws { try put(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try put(value) }

    private func put<T: Encodable>(_ value: T) throws {
        encoder.slot = try ValueEncoding.slot(for: value, at: codingPath)
    }
}

/// The encoder `superEncoder` hands out: it writes its result into the
/// parent container when it is done, i.e. on every change.
private final class SuperEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    private let inner: ValueEncoding
    private let store: (Slot) -> Void

    init(codingPath: [any CodingKey], store: @escaping (Slot) -> Void) {
        self.codingPath = codingPath
        self.inner = ValueEncoding(codingPath: codingPath)
        self.store = store
    }

    deinit {
        store(inner.slot ?? .object(ObjectBox()))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> { inner.container(keyedBy: type) }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { inner.unkeyedContainer() }
    func singleValueContainer() -> any SingleValueEncodingContainer { inner.singleValueContainer() }
}

/// Coding keys for array indices and `super`.
struct ValueCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(_ string: String) {
        stringValue = string
        intValue = nil
    }

    init(index: Int) {
        stringValue = "Index \(index)"
        intValue = index
    }

    init?(stringValue: String) { self.init(stringValue) }

    init?(intValue: Int) { self.init(index: intValue) }
}

// MARK: - Decoding

private struct ValueDecoding: Decoder {
    let value: Value
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func unbox<T: Decodable>(_ value: Value, as type: T.Type, at path: [any CodingKey]) throws -> T {
        if T.self == Value.self, let same = value as? T { return same }
        if let scalar = try scalar(value, as: type, at: path) { return scalar }
        return try T(from: ValueDecoding(value: value, codingPath: path))
    }

    private static func mismatch(_ type: Any.Type, _ value: Value, _ path: [any CodingKey]) -> DecodingError {
        .typeMismatch(type, .init(codingPath: path, debugDescription: "expected \(type), found \(value.typeName)"))
    }

    /// Scalars and the types with a fixed JSON form; nil for everything else.
    private static func scalar<T>(_ value: Value, as type: T.Type, at path: [any CodingKey]) throws -> T? {
        func cast<U>(_ result: U) -> T? { result as? T }
        switch type {
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch(type, value, path) }
            return cast(b)
        case is String.Type:
            guard case .string(let s) = value else { throw mismatch(type, value, path) }
            return cast(s)
        case is Double.Type: return cast(try double(value, type, path))
        case is Float.Type:
            let d = try double(value, type, path)
            // From the double's shortest decimal text, as a JSON parser reads a
            // Float from the text `canonicalJSON` writes: one rounding, not two.
            let f = d.isFinite ? Float("\(d)") ?? Float(d) : Float(d)
            if d.isFinite, !f.isFinite {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "\(d) does not fit in a Float"))
            }
            return cast(f)
        case is Int.Type: return cast(try integer(value, Int.self, path))
        case is Int8.Type: return cast(try integer(value, Int8.self, path))
        case is Int16.Type: return cast(try integer(value, Int16.self, path))
        case is Int32.Type: return cast(try integer(value, Int32.self, path))
        case is Int64.Type: return cast(try integer(value, Int64.self, path))
        case is UInt.Type: return cast(try integer(value, UInt.self, path))
        case is UInt8.Type: return cast(try integer(value, UInt8.self, path))
        case is UInt16.Type: return cast(try integer(value, UInt16.self, path))
        case is UInt32.Type: return cast(try integer(value, UInt32.self, path))
        case is UInt64.Type: return cast(try integer(value, UInt64.self, path))
        case is Date.Type:
            guard case .string(let text) = value else { throw mismatch(type, value, path) }
            guard let date = ISO8601Dates.date(from: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "`\(text)` is not an ISO 8601 date"))
            }
            return cast(date)
        case is URL.Type:
            guard case .string(let text) = value else { throw mismatch(type, value, path) }
            guard let url = URL(string: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "`\(text)` is not a URL"))
            }
            return cast(url)
        default:
            return nil
        }
    }

    private static func double(_ value: Value, _ type: Any.Type, _ path: [any CodingKey]) throws -> Double {
        switch value {
        case .double(let d): return d
        case .int(let i): return Double(i)
        case .string("nan"): return .nan
        case .string("inf"): return .infinity
        case .string("-inf"): return -.infinity
        default: throw mismatch(type, value, path)
        }
    }

    private static func integer<I: FixedWidthInteger>(_ value: Value, _ type: I.Type, _ path: [any CodingKey]) throws -> I {
        let result: I?
        switch value {
        case .int(let i): result = I(exactly: i)
        // Only where doubles are exact: a larger one may be the rounding of an
        // integer literal beyond `Int` (which the parser reads as a double).
        case .double(let d) where abs(d) <= 9_007_199_254_740_992: result = I(exactly: d)
        case .double: result = nil
        default: throw mismatch(type, value, path)
        }
        guard let result else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: path, debugDescription: "\(value.canonicalJSON) does not fit in \(type)"))
        }
        return result
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let fields) = value else { throw Self.mismatch([String: Value].self, value, codingPath) }
        return KeyedDecodingContainer(KeyedValueDecodingContainer<Key>(fields: fields, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw Self.mismatch([Value].self, value, codingPath) }
        return UnkeyedValueDecodingContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueDecodingContainerImpl(value: value, codingPath: codingPath)
    }
}

private struct KeyedValueDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let fields: [String: Value]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { fields.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { fields[key.stringValue] != nil }

    private func field(_ key: Key) throws -> Value {
        guard let value = fields[key.stringValue] else {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "no value for `\(key.stringValue)`"))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool { try field(key) == .null }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try take(type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try take(type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try take(type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try take(type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try take(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try take(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try take(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try take(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try take(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try take(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try take(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try take(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try take(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try take(type, key) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try take(type, key) }

    private func take<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T {
        let value = try field(key)
        if value == .null, !(T.self == Value.self) {
            throw DecodingError.valueNotFound(
                type, .init(codingPath: codingPath + [key], debugDescription: "expected \(type), found null"))
        }
        return try ValueDecoding.unbox(value, as: type, at: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoding(value: try field(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoding(value: try field(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        ValueDecoding(value: fields["super"] ?? .null, codingPath: codingPath + [ValueCodingKey("super")])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ValueDecoding(value: fields[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedValueDecodingContainer: UnkeyedDecodingContainer {
    let items: [Value]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [Value], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private var currentPath: [any CodingKey] { codingPath + [ValueCodingKey(index: currentIndex)] }

    private func current<T>(_ type: T.Type) throws -> Value {
        guard currentIndex < items.count else {
            throw DecodingError.valueNotFound(
                type, .init(codingPath: currentPath, debugDescription: "the array has only \(items.count) elements"))
        }
        return items[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard try current(Never.self) == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try take(type) }
    mutating func decode(_ type: String.Type) throws -> String { try take(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try take(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try take(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try take(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try take(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try take(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try take(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try take(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try take(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try take(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try take(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try take(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try take(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try take(type) }

    private mutating func take<T: Decodable>(_ type: T.Type) throws -> T {
        let value = try current(type)
        if value == .null, !(T.self == Value.self) {
            throw DecodingError.valueNotFound(type, .init(codingPath: currentPath, debugDescription: "expected \(type), found null"))
        }
        let decoded = try ValueDecoding.unbox(value, as: type, at: currentPath)
        currentIndex += 1
        return decoded
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let container = try ValueDecoding(value: try current(type), codingPath: currentPath).container(keyedBy: type)
        currentIndex += 1
        return container
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let container = try ValueDecoding(value: try current([Value].self), codingPath: currentPath).unkeyedContainer()
        currentIndex += 1
        return container
    }

    mutating func superDecoder() throws -> any Decoder {
        let decoder = ValueDecoding(value: try current(Value.self), codingPath: currentPath)
        currentIndex += 1
        return decoder
    }
}

private struct SingleValueDecodingContainerImpl: SingleValueDecodingContainer {
    let value: Value
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool { try take(type) }
    func decode(_ type: String.Type) throws -> String { try take(type) }
    func decode(_ type: Double.Type) throws -> Double { try take(type) }
    func decode(_ type: Float.Type) throws -> Float { try take(type) }
    func decode(_ type: Int.Type) throws -> Int { try take(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try take(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try take(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try take(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try take(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try take(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try take(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try take(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try take(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try take(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try take(type) }

    private func take<T: Decodable>(_ type: T.Type) throws -> T {
        if value == .null, !(T.self == Value.self) {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found null"))
        }
        return try ValueDecoding.unbox(value, as: type, at: codingPath)
    }
}
