/// Quoting for the one place a shell sees user text.
public enum ShellQuote {
    /// `text` as a single-quoted shell word; safe for any content.
    public static func quote(_ text: String) -> String {
        if !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) {
            return text
        }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
