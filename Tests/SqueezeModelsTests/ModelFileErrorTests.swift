import SqueezeModels
import Testing

@Suite struct ModelFileErrorTests {
    @Test func namesTheFile() {
        #expect(ModelFileError(file: "m.safetensors", "header is truncated").description == "m.safetensors: header is truncated")
    }
}
