import Foundation
@testable import SqueezeEngine
import Testing

/// `Pipeline.fileName(for:)` names logs, staging directories and `outputs/`
/// links after stage and matrix instance ids.
@Suite struct FileNameTests {
    @Test func distinctIDsGetDistinctNames() {
        let ids = [
            "x/y", "x_y", "x:y", "x y", "x%2Fy", "x%y", "x.y", "x-y", "xy", ".x", "%2Ex", "x\\y", "x\u{e9}y", "xe\u{301}y",
            "q[v=x/y]", "q[v=x_y]", "q[v=x:y]", "q[v=\"1\"]", "q[v=1]", "q[v=a,b]", "q[v=a_b]",
        ]
        let names = ids.map(Pipeline.fileName(for:))
        #expect(Set(names).count == ids.count, "\(zip(ids, names).map { "\($0) -> \($1)" })")
    }

    @Test func ordinaryIDsStayReadable() {
        #expect(Pipeline.fileName(for: "train_student-2") == "train_student-2")
        #expect(Pipeline.fileName(for: "int8[observer=mse,sparsity=0.6]") == "int8[observer=mse,sparsity=0.6]")
        #expect(Pipeline.fileName(for: "x/y") == "x%2Fy")
        #expect(Pipeline.fileName(for: "x:y") == "x%3Ay")
        #expect(Pipeline.fileName(for: "100%") == "100%25")
    }

    @Test func namesAreSingleVisiblePathComponents() {
        for id in ["..", ".", ".hidden", "a/../b", "/abs", "new\nline"] {
            let name = Pipeline.fileName(for: id)
            #expect(!name.hasPrefix("."), "\(id) -> \(name)")
            #expect(!name.contains("/") && !name.contains("\n"), "\(id) -> \(name)")
        }
    }

    @Test func longIDsAreShortenedWithoutColliding() {
        let shared = String(repeating: "sparsity=0.5,", count: 40)
        let first = Pipeline.fileName(for: "q[\(shared)a=1]")
        let second = Pipeline.fileName(for: "q[\(shared)a=2]")
        #expect(first != second)
        #expect(first.utf8.count <= Pipeline.maxFileNameBytes)
        #expect(second.utf8.count <= Pipeline.maxFileNameBytes)
        #expect(first.hasPrefix("q[sparsity=0.5,"))
    }
}
