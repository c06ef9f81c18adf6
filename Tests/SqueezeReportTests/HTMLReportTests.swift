import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SqueezeEngine
@testable import SqueezeReport
import Testing

/// The HTML report is checked as XML: it must parse, and its elements say
/// what is drawn (a row and a point per model, the front, a line per series).
@Suite struct HTMLReportTests {
    /// Every element of a parsed page: name, attributes and own text.
    final class Elements: NSObject, XMLParserDelegate {
        struct Element {
            var name: String
            var attributes: [String: String]
            var text = ""
            /// Indices of the enclosing elements, outermost first.
            var ancestors: [Int]
        }

        var all: [Element] = []
        private var open: [Int] = []
        var error: Error?

        static func parse(_ html: String) throws -> Elements {
            let elements = Elements()
            let parser = XMLParser(data: Data(html.utf8))
            parser.delegate = elements
            let parsed = parser.parse()
            if let error = elements.error ?? parser.parserError { throw error }
            try #require(parsed)
            return elements
        }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            all.append(Element(name: name, attributes: attributes, ancestors: open))
            open.append(all.count - 1)
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            open.removeLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let last = open.last { all[last].text += string }
        }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
            error = parseError
        }

        func named(_ name: String, within ancestor: (Element) -> Bool = { _ in true }) -> [Element] {
            all.filter { element in element.name == name && element.ancestors.contains { ancestor(all[$0]) } }
        }

        static func hasClass(_ name: String) -> (Element) -> Bool {
            { ($0.attributes["class"] ?? "").split(separator: " ").contains(Substring(name)) }
        }
    }

    @Test func everyModelHasARowAndAPointInEachTradeOff() throws {
        let report = RunReport(Fixtures.cofiRun())
        let page = try Elements.parse(HTMLReport.render(report))
        let labels = report.models.map(\.label)
        for table in ["models-quality", "models-speed"] {
            let rows = page.named("tr", within: Elements.hasClass(table)).compactMap { $0.attributes["data-model"] }
            #expect(rows == labels, "\(table)")
        }

        for cost in ["size", "latency"] {
            let points = page.named("circle", within: Elements.hasClass("trade-off-\(cost)"))
            #expect(points.compactMap { $0.attributes["data-model"] }.sorted() == labels.sorted(), "\(cost)")
            let front = points.filter { Elements.hasClass("front")($0) }.compactMap { $0.attributes["data-model"] }
            let expected = try #require(report.tradeOff(cost == "size" ? .size : .latency)).front
            #expect(Set(front) == Set(expected), "\(cost)")
            let labelsDrawn = page.named("text", within: Elements.hasClass("trade-off-\(cost)"))
                .filter { Elements.hasClass("point-label")($0) }.map(\.text)
            // The baseline evaluated by both eval stages is one point, labelled once.
            let coincident = "eval/teacher +1"
            #expect(labelsDrawn.contains(coincident) && !labelsDrawn.contains("sweep_eval[sparsity=0.8]/teacher"), "\(labelsDrawn)")
            for label in front where !label.hasSuffix("/teacher") {
                #expect(labelsDrawn.contains(label), "front model \(label) is labelled: \(labelsDrawn)")
            }
            #expect(labelsDrawn.allSatisfy { labels.contains($0) || $0 == coincident }, "\(labelsDrawn)")
            #expect(page.named("polyline", within: Elements.hasClass("trade-off-\(cost)")).count == 1, "the front's staircase")
        }
    }

    @Test func curvesProvenanceAndNothingExternal() throws {
        let report = RunReport(Fixtures.cofiRun())
        let html = HTMLReport.render(report)
        let page = try Elements.parse(html)
        let curveFigures = page.all.filter { $0.name == "figure" && $0.attributes["data-metric"] != nil }
        #expect(curveFigures.count == report.curves.count)
        let series = page.all.filter { $0.name == "polyline" && $0.attributes["data-series"] != nil }
        #expect(series.count == report.curves.map(\.series.count).reduce(0, +))
        let stageRows = page.named("tr", within: Elements.hasClass("stages")).compactMap { $0.attributes["data-stage"] }
        #expect(stageRows == report.run.stages.map(\.id))
        let facts = page.all.filter { $0.name == "dd" }.map(\.text)
        #expect(facts.contains("pipelines/sst2-cofi.yaml (sst2-cofi)"))
        #expect(facts.contains("vars.epochs=3"))
        #expect(facts.contains { $0.hasPrefix("0123456789abcdef0123456789abcdef01234567 (dirty)") })
        #expect(!page.all.contains { ["script", "link", "img", "iframe"].contains($0.name) })
        let references = page.all.flatMap { $0.attributes.filter { ["href", "src"].contains($0.key) } }
        #expect(references.isEmpty, "\(references)")
    }

    @Test func textFromTheRecordIsEscaped() throws {
        let hostile = "<script>alert('x')</script> & \"q\""
        var run = Fixtures.run(stages: [
            Fixtures.stage("eval\"><img src=x>", "eval/classification", metrics: Fixtures.evalMetrics(
                [(hostile, 0.8, 10, 1), ("plain", 0.7, 5, 2)], baseline: nil)),
            Fixtures.stage("train", "train/finetune", metrics: [
                "</svg>_curve": .array([.array([.int(1), .double(0.5)])]),
            ]),
        ])
        run.recipeFile = "</dd><script>bad()</script>"
        run.overrides = ["vars.x=\u{1}<b>"]
        run.stages[0].reason = "& <i>"
        let html = HTMLReport.render(RunReport(run))
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>") && !html.contains("<i>"))
        let page = try Elements.parse(html)
        #expect(page.named("tr", within: Elements.hasClass("models")).compactMap { $0.attributes["data-model"] }.contains(hostile))
        #expect(page.all.contains { $0.name == "text" && $0.text == hostile }, "point labels read back as written")
        #expect(page.all.contains { $0.name == "dd" && $0.text == "vars.x=<b>" }, "control characters are dropped")
        #expect(page.all.filter { $0.name == "svg" }.count == 3, "two trade-offs and one curve; no injected </svg>")
    }

    @Test func aRunWithoutEvaluationsStillRenders() throws {
        let run = Fixtures.run(stages: [Fixtures.stage("data", "data/text-classification")])
        let html = HTMLReport.render(RunReport(run))
        let page = try Elements.parse(html)
        #expect(page.all.contains { Elements.hasClass("empty")($0) })
        #expect(page.named("svg").isEmpty)
    }

    @Test func labelsAvoidEachOther() {
        let frame = ChartFrame(x: ChartScale(minimum: 0, maximum: 10), y: ChartScale(minimum: 0, maximum: 10))
        let first = ScatterChart.placeLabel("teacher", x: 200, y: 200, frame: frame, occupied: [])
        let second = ScatterChart.placeLabel("teacher2", x: 200, y: 200, frame: frame, occupied: [first.box])
        #expect(first.box.overlap(second.box) == 0)
        let nearRightEdge = ScatterChart.placeLabel("a-long-model-name", x: frame.plotRight - 10, y: 200, frame: frame, occupied: [])
        #expect(nearRightEdge.anchor == "end", "a label that would leave the chart goes left")
    }
}
