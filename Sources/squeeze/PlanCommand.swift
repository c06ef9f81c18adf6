import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeStages
import SqueezeSupport

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show the stages in execution order, each `run`, `cached` or `blocked`, and why.")

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storage: StorageOptions

    @Option(help: ArgumentHelp("Plan these stages as forced (repeatable or comma-separated).", valueName: "stage"))
    var force: [String] = []

    @Option(help: ArgumentHelp("Plan only these stages and what they need.", valueName: "stage"))
    var only: [String] = []

    @Flag(help: "Print the plan as JSON.")
    var json = false

    func run() throws {
        let loaded = try recipe.load()
        let forced = try selectStages(stageList(force), in: loaded, flag: "--force")
        let selected = try selectStages(stageList(only), in: loaded, flag: "--only")
        let store = try storage.openStore()
        let pipeline = Pipeline(
            recipe: loaded, registry: Registered.stages, store: store,
            environment: ProcessInfo.processInfo.environment)
        let plans: [StagePlan]
        do {
            plans = try pipeline.plan(force: Set(forced), only: selected.isEmpty ? nil : Set(selected))
        } catch {
            throw UserError("\(error)")
        }
        try? store.flush()
        if json {
            print(plans.prettyJSON, terminator: "")
            return
        }
        let width = plans.map(\.id.count).max() ?? 0
        for plan in plans {
            let id = plan.id.padding(toLength: width, withPad: " ", startingAt: 0)
            let status = plan.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
            let reason = plan.reason.isEmpty ? "" : "  \(plan.reason)"
            print("\(id)  \(status)\(plan.uses)\(reason)")
        }
    }
}
