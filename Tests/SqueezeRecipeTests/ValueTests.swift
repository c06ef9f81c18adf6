import SqueezeRecipe
import Testing

@Suite struct ValueTests {
    @Test func canonicalJSONSortsKeysAndKeepsFloatsFloats() {
        let value = Value.object(["b": .int(1), "a": .array([.double(3), .double(0.5), .string("x\"y\n")]), "c": .null])
        #expect(value.canonicalJSON == #"{"a":[3.0,0.5,"x\"y\n"],"b":1,"c":null}"#)
    }
}
