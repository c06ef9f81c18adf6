import ArgumentParser
import SqueezeRecipe
import SqueezeStages
import SqueezeYAML
import SqueezeSupport

struct StagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stages",
        abstract: "List stage types, or show one type's parameters and outputs.")

    @Argument(help: "A stage type, e.g. `command`.") var type: String?

    func run() throws {
        let registry = Registered.stages
        guard let type else {
            let width = registry.names.map(\.count).max() ?? 0
            for name in registry.names {
                guard let descriptor = registry[name]?.descriptor else { continue }
                print("\(name.padding(toLength: width, withPad: " ", startingAt: 0))  v\(descriptor.version)  \(descriptor.summary)")
            }
            return
        }
        guard let descriptor = registry[type]?.descriptor else {
            var message = "unknown stage type `\(type)`"
            if let hint = Suggestion.hint(for: type, in: registry.names) { message += "; \(hint)" }
            throw UserError(message)
        }
        print("\(descriptor.type) (version \(descriptor.version))\n  \(descriptor.summary)\n\nparameters:")
        for parameter in descriptor.parameters {
            let requirement = parameter.required
                ? "required" : parameter.defaultValue.map { "default \($0.canonicalJSON)" } ?? "optional"
            print("  \(parameter.name): \(parameter.type)  (\(requirement))\n      \(parameter.doc)")
        }
        print("\noutputs:")
        for output in descriptor.outputs {
            print("  \(output.name): \(output.kind)\n      \(output.doc)")
        }
    }
}

struct SchemaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Print the JSON Schema of recipes (what schemas/recipe.schema.json holds).")

    func run() throws {
        let descriptors = Registered.stages.names.compactMap { Registered.stages[$0]?.descriptor }
        print(RecipeSchema.generate(stageTypes: descriptors, backends: Registered.backends.recipeBackends).prettyJSON, terminator: "")
    }
}
