/// Text from run records made safe for HTML and SVG (which the report keeps
/// well-formed XML): markup characters become entities, and the control
/// characters XML forbids are dropped.
enum HTMLText {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case let control where control.value < 0x20 || (0xFFFE...0xFFFF).contains(control.value): continue
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
