import Collections
import SqueezeYAML

/// Cycle detection over stage dependencies.
enum DependencyCycles {
    /// One cycle per strongly connected component that has one, as stage ids
    /// from the component's first stage (in `order`) back to it:
    /// `["a", "b", "c", "a"]` where `a` depends on `b`, `b` on `c`, `c` on `a`.
    static func find(order: [String], edges: [String: [String]]) -> [[String]] {
        let components = stronglyConnectedComponents(order: order, edges: edges)
        let position = Dictionary(order.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var cycles: [[String]] = []
        for component in components where component.count > 1 {
            let members = Set(component)
            guard let start = component.min(by: { (position[$0] ?? .max) < (position[$1] ?? .max) }),
                  let cycle = shortestCycle(from: start, within: members, edges: edges)
            else { continue }
            cycles.append(cycle)
        }
        return cycles.sorted { (position[$0[0]] ?? .max) < (position[$1[0]] ?? .max) }
    }

    /// Breadth-first search from `start` back to itself inside one component.
    private static func shortestCycle(from start: String, within members: Set<String>, edges: [String: [String]]) -> [String]? {
        var parent: [String: String] = [:]
        var queue: Deque<String> = [start]
        var visited: Set<String> = [start]
        while let node = queue.popFirst() {
            for next in edges[node] ?? [] where members.contains(next) {
                if next == start {
                    var path = [node]
                    var current = node
                    while let previous = parent[current] {
                        path.append(previous)
                        current = previous
                    }
                    return path.reversed() + [start]
                }
                if visited.insert(next).inserted {
                    parent[next] = node
                    queue.append(next)
                }
            }
        }
        return nil
    }

    /// Tarjan's algorithm, iterative so a long chain of stages cannot overflow the stack.
    private static func stronglyConnectedComponents(order: [String], edges: [String: [String]]) -> [[String]] {
        var index: [String: Int] = [:]
        var lowLink: [String: Int] = [:]
        var onStack: Set<String> = []
        var stack: [String] = []
        var components: [[String]] = []
        var counter = 0

        for root in order where index[root] == nil {
            // Each frame is a node and the position of the next edge to follow.
            var frames: [(node: String, next: Int)] = [(root, 0)]
            index[root] = counter
            lowLink[root] = counter
            counter += 1
            stack.append(root)
            onStack.insert(root)

            while let frame = frames.last {
                let successors = edges[frame.node] ?? []
                if frame.next < successors.count {
                    frames[frames.count - 1].next += 1
                    let successor = successors[frame.next]
                    if index[successor] == nil {
                        index[successor] = counter
                        lowLink[successor] = counter
                        counter += 1
                        stack.append(successor)
                        onStack.insert(successor)
                        frames.append((successor, 0))
                    } else if onStack.contains(successor) {
                        lowLink[frame.node] = min(lowLink[frame.node] ?? 0, index[successor] ?? 0)
                    }
                    continue
                }
                frames.removeLast()
                if let parent = frames.last {
                    lowLink[parent.node] = min(lowLink[parent.node] ?? 0, lowLink[frame.node] ?? 0)
                }
                if lowLink[frame.node] == index[frame.node] {
                    var component: [String] = []
                    while let member = stack.popLast() {
                        onStack.remove(member)
                        component.append(member)
                        if member == frame.node { break }
                    }
                    components.append(component)
                }
            }
        }
        return components
    }
}

extension RecipeValidation {
    /// One "dependency cycle: a -> b -> a" error per cycle, at its first stage.
    mutating func reportCycles(stages: OrderedDictionary<String, StageSpec>) {
        let edges = stages.mapValues(\.dependencies)
        for cycle in DependencyCycles.find(order: Array(stages.keys), edges: Dictionary(uniqueKeysWithValues: edges.map { ($0.key, $0.value) })) {
            guard let first = cycle.first, let stage = stages[first] else { continue }
            error(
                "dependency cycle: \(cycle.joined(separator: " -> "))", at: stage.location,
                hint: "each arrow is a `needs` entry or a `${stage.output}` reference; remove one to break the cycle")
        }
    }
}
