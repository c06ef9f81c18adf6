import ArgumentParser

@main
struct Squeeze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squeeze",
        abstract: "Run declarative model-compression pipelines.",
        version: "0.1.0"
    )
}
