import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeStages
import SqueezeSupport

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show the stages in execution order, each `run`, `cached`, `remote` or `blocked`, and why.",
        discussion: """
            With a remote cache (--remote or $SQUEEZE_REMOTE_CACHE), each stage the local cache lacks is looked up \
            there (one GET of its entry): `remote` means `run` will fetch it instead of computing it.
            """)

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storage: StorageOptions
    @OptionGroup var remote: RemoteOptions

    @Option(help: ArgumentHelp("Plan these stages as forced (repeatable or comma-separated).", valueName: "stage"))
    var force: [String] = []

    @Option(help: ArgumentHelp("Plan only these stages and what they need.", valueName: "stage"))
    var only: [String] = []

    @Flag(help: "Print the plan as JSON.")
    var json = false

    func run() async throws {
        let loaded = try recipe.load()
        let forced = try selectStages(stageList(force), in: loaded, flag: "--force")
        let selected = try selectStages(stageList(only), in: loaded, flag: "--only")
        let environment = ProcessInfo.processInfo.environment
        let site = try SiteConfiguration.forRecipe(directory: loaded.directory, environment: environment)
        let store = try storage.openStore(site: site.cacheDirectory)
        var pipeline = Pipeline(recipe: loaded, registry: Registered.stages, store: store, environment: environment)
        pipeline.remote = try remote.remoteCache(site: site.remoteCache)
        let plans: [StagePlan]
        do {
            plans = try await pipeline.plan(
                force: Set(forced), only: selected.isEmpty ? nil : Set(selected), warn: { Console.error("warning: \($0)") })
        } catch {
            throw UserError("\(error)")
        }
        try? store.flush()
        try pipeline.checkPublications(only: selected.isEmpty ? nil : Set(selected), runsRoot: storage.runStore.root)
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
