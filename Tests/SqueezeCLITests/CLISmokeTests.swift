import Foundation
import Testing

@Suite struct CLISmokeTests {
    @Test func printsVersion() throws {
        let result = try SqueezeCLI.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("0.1.0"))
    }
}

/// Runs the built `squeeze` executable.
enum SqueezeCLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The products directory holding the test bundle also holds `squeeze`.
    static var executable: URL {
        var url = Bundle.main.bundleURL
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.appendingPathComponent("squeeze").path) {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent("squeeze")
    }

    static func run(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}
