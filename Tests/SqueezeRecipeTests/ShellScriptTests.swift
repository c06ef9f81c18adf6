import Foundation
import SqueezeRecipe
import Testing

/// How `ShellScript` puts values into a `shell: true` script: as environment
/// variables, expanded in the form that keeps them one word where they stand.
@Suite struct ShellScriptTests {
    /// `before` + a value + `after`, rendered.
    private func render(_ before: String, _ after: String = "") throws -> String {
        try ShellScript(Template([.literal(before), .value("V"), .literal(after)])) { _ in "" }.text
    }

    @Test(arguments: [
        ("echo ", "", #"echo "${SQUEEZE_ARG_1}""#),
        (#"echo "v: "#, #"""#, #"echo "v: ${SQUEEZE_ARG_1}""#),
        ("echo pre-", "'-post'", #"echo pre-"${SQUEEZE_ARG_1}"'-post'"#),
        ("x=$(basename ", ")", #"x=$(basename "${SQUEEZE_ARG_1}")"#),
        (#"echo "$(basename "#, #")""#, #"echo "$(basename "${SQUEEZE_ARG_1}")""#),
        (#"echo "$(f "#, #")""#, #"echo "$(f "${SQUEEZE_ARG_1}")""#),
        ("echo 'a' \"b\" $(c) ", "", #"echo 'a' "b" $(c) "${SQUEEZE_ARG_1}""#),
        ("grep -v '^$' ", "", #"grep -v '^$' "${SQUEEZE_ARG_1}""#),
        ("echo it\\'s ", "", #"echo it\'s "${SQUEEZE_ARG_1}""#),
        (#"echo "a\"b "#, #"""#, #"echo "a\"b ${SQUEEZE_ARG_1}""#),
        ("cat <<EOF\nh: ", "\nEOF", "cat <<EOF\nh: ${SQUEEZE_ARG_1}\nEOF"),
        ("cat <<-EOF >f\n\tt: ", "\n\tEOF", "cat <<-EOF >f\n\tt: ${SQUEEZE_ARG_1}\n\tEOF"),
        ("cat <<EOF\nEOF\necho ", "", "cat <<EOF\nEOF\necho \"${SQUEEZE_ARG_1}\""),
        ("cat <<<x; echo ", "", "cat <<<x; echo \"${SQUEEZE_ARG_1}\""),
        ("# note ", "\necho", "# note \"${SQUEEZE_ARG_1}\"\necho"),
        ("echo $((1 + 2)) ", "", "echo $((1 + 2)) \"${SQUEEZE_ARG_1}\""),
        ("echo $${HOME} ", "", "echo ${HOME} \"${SQUEEZE_ARG_1}\""),
    ])
    func eachPlaceGetsTheExpansionThatKeepsOneWord(_ before: String, _ after: String, _ expected: String) throws {
        // `$${` is how a recipe writes a literal `${`.
        #expect(try render(before.replacingOccurrences(of: "$${", with: "${"), after) == expected)
    }

    @Test func valuesAndReferencesTravelInTheEnvironment() throws {
        let template = Template([
            .literal("cp "), .reference(.environment(name: "SRC", fallback: nil)), .literal(" \""),
            .value("it's $(x)"), .literal("\"/"), .reference(.outputDirectory),
        ])
        let script = try ShellScript(template) { $0 == .outputDirectory ? "/out" : "`src`" }
        #expect(script.text == #"cp "${SQUEEZE_ARG_1}" "${SQUEEZE_ARG_2}"/"${SQUEEZE_ARG_3}""#)
        #expect(script.environment == ["SQUEEZE_ARG_1": "`src`", "SQUEEZE_ARG_2": "it's $(x)", "SQUEEZE_ARG_3": "/out"])

        // The stage receives it back through JSON, as every parameter.
        let json = try JSONEncoder().encode(script.parameterValue)
        #expect(try JSONDecoder().decode(ShellScript.self, from: json) == script)
        #expect(try ShellScript(Template(literal: "echo hi")) { _ in "" }.parameterValue == .string("echo hi"))
    }

    @Test(arguments: [
        ("echo ok\necho '", "'", "inside single quotes", 2),
        ("echo $'", "'", "inside single quotes", 1),
        ("echo \"$(sh -c 'echo ", "')\"", "inside single quotes", 1),
        ("echo `echo ", "`", "inside backquotes", 1),
        ("echo $(( ", " + 1 ))", "inside shell arithmetic", 1),
        ("(( n = ", " ))", "inside shell arithmetic", 1),
        ("echo ${HOME:-", "}", "inside a shell `${…}` expansion", 1),
        ("echo \\", "", "right after a backslash", 1),
        ("cat <<'EOF'\n\n", "\nEOF", "in a here-document with a quoted delimiter", 3),
        ("cat <<", "", "as a here-document delimiter", 1),
    ])
    func placesWhereTheShellCannotExpandAValueAreRefused(_ before: String, _ after: String, _ place: String, _ line: Int) throws {
        let parts: [Template.Part] = [.literal(before), .value("V"), .literal(after)]
        let refusal = try #require(ShellScript.refusals(in: parts).first ?? nil)
        #expect(refusal.place.hasPrefix(place))
        #expect(refusal.line == line)
        #expect(throws: ShellScript.Refusal.self) { try ShellScript(Template(parts)) { _ in "" } }
    }

    @Test func quotesClosedBeforeAValueDoNotRefuseIt() {
        let parts: [Template.Part] = [
            .literal("echo 'a'"), .value("1"), .literal(" \"b\" "), .value("2"), .literal(" $(echo 'c') "), .value("3"),
        ]
        #expect(ShellScript.refusals(in: parts).allSatisfy { $0 == nil })
    }
}
