import Collections
import SqueezeSupport
import SqueezeYAML

/// Turns a recipe with `matrix:` into one whose stages are the instances of
/// the sweep.
enum MatrixExpansion {
    /// `base` is the recipe with the variables' own values; `instances[i]` the
    /// recipe validated with combination `i` bound. A stage is instantiated
    /// once per combination of the swept variables it depends on: those its
    /// body names (a profile-set variable counts as `profile` when `profile`
    /// is swept), and those of every stage it depends on, in any combination.
    /// Instances connect to the upstream instances of the same combination.
    static func expand(
        base: Recipe, combinations: [OrderedDictionary<String, Value>], instances: [Recipe],
        variableUses: [String: Set<String>], profileVariables: Set<String>
    ) -> Recipe {
        let swept = Set(combinations.flatMap(\.keys))
        let profile = RecipeValidation.profileVariable
        var depends: [String: Set<String>] = [:]
        var edges: [String: Set<String>] = [:]
        for id in base.stages.keys {
            let uses = variableUses[id] ?? []
            var direct = uses.intersection(swept)
            if swept.contains(profile), !uses.isDisjoint(with: profileVariables) { direct.insert(profile) }
            depends[id] = direct
            edges[id] = Set(instances.flatMap { $0.stages[id]?.dependencies ?? [] })
        }
        // Sets only grow and are bounded by `swept`: this reaches a fixed point.
        var changed = true
        while changed {
            changed = false
            for id in base.stages.keys {
                let inherited = (edges[id] ?? []).reduce(depends[id] ?? []) { $0.union(depends[$1] ?? []) }
                if inherited != depends[id] {
                    depends[id] = inherited
                    changed = true
                }
            }
        }

        func binding(_ id: String, _ combination: OrderedDictionary<String, Value>) -> OrderedDictionary<String, Value> {
            OrderedDictionary(uniqueKeysWithValues: (depends[id] ?? []).sorted().compactMap { name in
                combination[name].map { (name, $0) }
            })
        }
        func instanceID(_ id: String, _ combination: OrderedDictionary<String, Value>) -> String {
            MatrixSweep.instanceID(id, binding(id, combination))
        }

        var stages: OrderedDictionary<String, StageSpec> = [:]
        for id in base.stages.keys {
            for (combination, recipe) in zip(combinations, instances) {
                let instance = instanceID(id, combination)
                guard stages[instance] == nil, var spec = recipe.stages[id] else { continue }
                spec.id = instance
                spec.baseID = id
                spec.matrixValues = binding(id, combination)
                spec.needs = spec.needs.map { instanceID($0, combination) }
                spec.dependencies = spec.dependencies.map { instanceID($0, combination) }
                stages[instance] = spec
            }
        }
        var expanded = base
        expanded.stages = stages
        expanded.matrix = MatrixSweep(variables: swept.sorted(), combinations: combinations)
        return expanded
    }
}
