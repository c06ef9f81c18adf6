import ArgumentParser

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Parse and validate a recipe; print nothing but errors (exit 2 on any) and warnings.")

    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        _ = try recipe.load()
    }
}
