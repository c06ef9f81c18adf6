import Collections
import SqueezeYAML

extension RecipeValidation {
    /// The variable whose value names the profile to apply.
    static let profileVariable = "profile"

    /// Checks `profiles:` and applies the profile named by `vars.profile` to
    /// `vars:` in the tree: each variable the profile sets replaces the recipe's
    /// value, except those in `explicit` (given with `--set` or bound by a matrix
    /// combination), which always win. Every profile is checked, not only the
    /// chosen one, so a broken profile is reported before someone selects it.
    /// Returns the chosen profile's name, or nil when none is chosen.
    mutating func applyProfile(to root: inout YAMLNode, explicit: Set<String>) -> String? {
        guard let profilesEntry = root.entries?.first(where: { $0.key.scalar == "profiles" }) else { return nil }
        let node = profilesEntry.value
        let isNull = node.scalar != nil && YAMLScalar.resolve(node) == .null
        guard let entries = node.entries ?? (isNull ? [] : nil) else {
            error(
                "`profiles` must be a mapping of profile names to variable values, got \(Self.describe(node))",
                at: node.location, hint: "write `profiles: { quick: { epochs: 1 }, full: { epochs: 3 } }`")
            return nil
        }
        let declared = root["vars"]?.entries ?? []
        let declaredNames = declared.compactMap(\.key.scalar)
        var profiles: OrderedDictionary<String, [(name: String, key: YAMLNode, value: YAMLNode)]> = [:]
        for entry in entries {
            guard let name = mappingKey(entry.key) else { continue }
            if !Names.isStageID(name) {
                error("invalid profile name `\(name)`", at: entry.key.location, hint: "profile names match \(Names.stageIDPattern)")
            }
            profiles[name] = checkProfile(name, body: entry.value, declared: declared, declaredNames: declaredNames)
        }

        guard let selector = declared.first(where: { $0.key.scalar == Self.profileVariable }) else {
            let example = profiles.keys.first ?? "NAME"
            error(
                "`profiles:` is given but there is no `\(Self.profileVariable)` variable to choose one", at: profilesEntry.key.location,
                hint: "add `\(Self.profileVariable): \(example)` under `vars:` (choose another with `--set vars.\(Self.profileVariable)=NAME`)")
            return nil
        }
        let choice = selector.value
        if choice.scalar != nil, YAMLScalar.resolve(choice) == .null { return nil }
        guard let chosen = stringValue(choice, what: "vars.\(Self.profileVariable)") else { return nil }
        guard let settings = profiles[chosen] else {
            let names = profiles.keys.map { $0 }
            let list = names.isEmpty ? "no profiles are defined" : "profiles: \(Self.list(names))"
            let hint = Suggestion.hint(for: chosen, in: names).map { "\($0) \(list)" } ?? list
            error("unknown profile `\(chosen)`", at: choice.location, hint: hint)
            return nil
        }
        guard var vars = root["vars"] else { return chosen }
        for setting in settings where !explicit.contains(setting.name) {
            vars.setValue(setting.value, forKey: setting.name, keyLocation: setting.key.location)
        }
        root.setValue(vars, forKey: "vars", keyLocation: profilesEntry.key.location)
        return chosen
    }

    /// One profile's settings, each declared under `vars:` and of the
    /// variable's type (converted as `--set` converts); wrong ones are reported
    /// and left out.
    private mutating func checkProfile(
        _ profile: String, body: YAMLNode, declared: [YAMLNode.Entry], declaredNames: [String]
    ) -> [(name: String, key: YAMLNode, value: YAMLNode)] {
        if body.scalar != nil, YAMLScalar.resolve(body) == .null { return [] }
        guard let entries = body.entries else {
            error(
                "profile `\(profile)` must be a mapping of variable names to values, got \(Self.describe(body))",
                at: body.location, hint: "write `\(profile): { NAME: VALUE, … }`")
            return []
        }
        var settings: [(name: String, key: YAMLNode, value: YAMLNode)] = []
        for entry in entries {
            guard let name = mappingKey(entry.key) else { continue }
            if name == Self.profileVariable {
                error(
                    "profile `\(profile)` sets `\(name)`, which chooses the profile", at: entry.key.location,
                    hint: "remove it; choose a profile with `vars.\(name)` or `--set vars.\(name)=NAME`")
                continue
            }
            guard let old = declared.first(where: { $0.key.scalar == name })?.value else {
                error(
                    "profile `\(profile)` sets `\(name)`, which is not declared under `vars:`", at: entry.key.location,
                    hint: Suggestion.hint(for: name, in: declaredNames) ?? "declare `\(name)` under `vars:` with its default value")
                continue
            }
            guard let converted = variableValue(entry.value, replacing: old) else {
                error(
                    "profile `\(profile)` sets `\(name)` to \(Self.describe(entry.value)), but the variable is \(Self.describe(old))",
                    at: entry.value.location, hint: "give a value of the type the variable has under `vars:`")
                continue
            }
            settings.append((name, entry.key, converted))
            profileVariables.insert(name)
        }
        return settings
    }
}
