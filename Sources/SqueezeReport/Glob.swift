/// Shell-style patterns over dotted metric paths: `*` matches any run of
/// characters (dots included, so `eval.*.accuracy` matches every model of the
/// `eval` stage), `?` exactly one; everything else, `[` and `]` of sweep
/// instance ids included, matches itself.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let characters: [Character]

    public init(_ pattern: String) {
        self.pattern = pattern
        characters = Array(pattern)
    }

    public var description: String { pattern }

    public func matches(_ text: String) -> Bool {
        let subject = Array(text)
        var patternIndex = 0, subjectIndex = 0
        // Where the last `*` was, and the subject position it is retried from.
        var star: (pattern: Int, subject: Int)?
        while subjectIndex < subject.count {
            let next = patternIndex < characters.count ? characters[patternIndex] : nil
            if next == "*" {
                star = (patternIndex, subjectIndex)
                patternIndex += 1
            } else if next == "?" || next == subject[subjectIndex] {
                patternIndex += 1
                subjectIndex += 1
            } else if let last = star {
                // Let the last `*` swallow one more character and retry.
                patternIndex = last.pattern + 1
                subjectIndex = last.subject + 1
                star = (last.pattern, last.subject + 1)
            } else {
                return false
            }
        }
        while patternIndex < characters.count, characters[patternIndex] == "*" { patternIndex += 1 }
        return patternIndex == characters.count
    }
}
