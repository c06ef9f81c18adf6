import Foundation

/// The frame every chart shares: a title, a plot area with grid lines, tick
/// labels and axis titles. Sizes are SVG user units (pixels at 100 %).
struct ChartFrame {
    var width: Double = 580
    var height: Double = 380
    var left: Double = 70
    var right: Double = 24
    var top: Double = 44
    var bottom: Double = 56
    var x: ChartScale
    var y: ChartScale

    var plotLeft: Double { left }
    var plotRight: Double { width - right }
    var plotTop: Double { top }
    var plotBottom: Double { height - bottom }

    func px(_ value: Double) -> Double { x.position(value, from: plotLeft, to: plotRight) }
    func py(_ value: Double) -> Double { y.position(value, from: plotBottom, to: plotTop) }

    /// Opens the `<svg>` and draws the title, grid, ticks and axis titles.
    func open(title: String, xTitle: String, yTitle: String, className: String) -> String {
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" class="chart \(className)" width="\(n(width))" height="\(n(height))" \
            viewBox="0 0 \(n(width)) \(n(height))" role="img" aria-label="\(HTMLText.escape(title))">
            <text class="chart-title" x="\(n(plotLeft))" y="22">\(HTMLText.escape(title))</text>
            <rect class="plot-area" x="\(n(plotLeft))" y="\(n(plotTop))" width="\(n(plotRight - plotLeft))" height="\(n(plotBottom - plotTop))"/>

            """
        for tick in x.ticks {
            let position = px(tick)
            svg += "<line class=\"grid\" x1=\"\(n(position))\" y1=\"\(n(plotTop))\" x2=\"\(n(position))\" y2=\"\(n(plotBottom))\"/>"
            svg += "<text class=\"tick\" x=\"\(n(position))\" y=\"\(n(plotBottom + 18))\" text-anchor=\"middle\">\(x.label(tick))</text>\n"
        }
        for tick in y.ticks {
            let position = py(tick)
            svg += "<line class=\"grid\" x1=\"\(n(plotLeft))\" y1=\"\(n(position))\" x2=\"\(n(plotRight))\" y2=\"\(n(position))\"/>"
            svg += "<text class=\"tick\" x=\"\(n(plotLeft - 8))\" y=\"\(n(position + 4))\" text-anchor=\"end\">\(y.label(tick))</text>\n"
        }
        svg += "<text class=\"axis-title\" x=\"\(n((plotLeft + plotRight) / 2))\" y=\"\(n(height - 14))\" text-anchor=\"middle\">\(HTMLText.escape(xTitle))</text>\n"
        let middle = (plotTop + plotBottom) / 2
        svg += "<text class=\"axis-title\" x=\"18\" y=\"\(n(middle))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(n(middle)))\">\(HTMLText.escape(yTitle))</text>\n"
        return svg
    }

    /// A coordinate with at most one decimal.
    func n(_ value: Double) -> String { ChartFrame.n(value) }

    static func n(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.1f", rounded)
    }
}

/// An estimate of a label's box, for keeping labels apart without a layout engine.
struct LabelBox {
    var minX, minY, maxX, maxY: Double

    /// 12 px text: at most about 7.2 px per character (bold included), 12 px high above the baseline.
    init(text: String, x: Double, baseline: Double, anchor: String) {
        let width = Double(text.count) * 7.2
        minX = anchor == "end" ? x - width : anchor == "middle" ? x - width / 2 : x
        maxX = minX + width
        minY = baseline - 11
        maxY = baseline + 3
    }

    init(minX: Double, minY: Double, maxX: Double, maxY: Double) {
        self.minX = minX
        self.minY = minY
        self.maxX = maxX
        self.maxY = maxY
    }

    init(centerX: Double, centerY: Double, radius: Double) {
        minX = centerX - radius
        maxX = centerX + radius
        minY = centerY - radius
        maxY = centerY + radius
    }

    func overlap(_ other: LabelBox) -> Double {
        max(0, min(maxX, other.maxX) - max(minX, other.minX)) * max(0, min(maxY, other.maxY) - max(minY, other.minY))
    }
}

/// Accuracy against a cost: a point per model, named, the Pareto front
/// filled and joined by its staircase, the others hollow.
struct ScatterChart {
    struct Point {
        var label: String
        var x: Double
        var y: Double
        var onFront: Bool
        var isBaseline: Bool
    }

    var title: String
    var xTitle: String
    var yTitle: String
    var points: [Point]
    var className: String
    /// Which way the y axis improves (the front and the label order follow it).
    var better: ParetoFront.Better = .higher
    /// A logarithmic y axis (the values must be positive).
    var logarithmicY = false
    var width: Double = 580

    /// `y` with the sign that makes larger better.
    func merit(_ y: Double) -> Double { better == .higher ? y : -y }

    func svg() -> String {
        // Costs start at 0 so ratios read true; accuracy zooms to the data.
        let frame = ChartFrame(
            width: width, height: width > 700 ? 460 : 380,
            x: ChartScale(minimum: 0, maximum: (points.map(\.x).max() ?? 1) * 1.05),
            y: logarithmicY ? ChartScale(logarithmicCovering: points.map(\.y)) : ChartScale(covering: points.map(\.y), margin: 0.1))
        var svg = frame.open(title: title, xTitle: xTitle, yTitle: yTitle, className: className)

        let front = points.filter(\.onFront).sorted { ($0.x, -merit($0.y)) < ($1.x, -merit($1.y)) }
        var corners: [(x: Double, y: Double)] = []
        for (index, point) in front.enumerated() {
            if index > 0 { corners.append((frame.px(point.x), frame.py(front[index - 1].y))) }
            corners.append((frame.px(point.x), frame.py(point.y)))
        }
        if corners.count > 1 {
            svg += "<polyline class=\"front-line\" points=\"\(corners.map { "\(frame.n($0.x)),\(frame.n($0.y))" }.joined(separator: " "))\"/>\n"
        }

        let radius = 6.0
        // Labels keep off the points and the staircase.
        var occupied = points.map { LabelBox(centerX: frame.px($0.x), centerY: frame.py($0.y), radius: radius + 1) }
        for (start, end) in zip(corners, corners.dropFirst()) {
            occupied.append(LabelBox(
                minX: min(start.x, end.x) - 2, minY: min(start.y, end.y) - 2, maxX: max(start.x, end.x) + 2, maxY: max(start.y, end.y) + 2))
        }
        for point in points {
            let classes = ["point", point.onFront ? "front" : "dominated", point.isBaseline ? "baseline" : nil].compactMap { $0 }
            let tip = "\(point.label): \(String(format: "%.2f", point.y)) at \(String(format: "%.3g", point.x))"
            svg += "<circle class=\"\(classes.joined(separator: " "))\" data-model=\"\(HTMLText.escape(point.label))\" "
                + "cx=\"\(frame.n(frame.px(point.x)))\" cy=\"\(frame.n(frame.py(point.y)))\" r=\"\(frame.n(radius))\">"
                + "<title>\(HTMLText.escape(tip))</title></circle>\n"
        }
        for group in labelGroups(frame) {
            let text = group.count > 1 ? "\(group.lead.label) +\(group.count - 1)" : group.lead.label
            let placed = Self.placeLabel(text, x: group.x, y: group.y, frame: frame, occupied: occupied)
            // A dominated model's label only where it collides with nothing; its tooltip still names it.
            guard placed.cost == 0 || group.lead.onFront || group.lead.isBaseline else { continue }
            occupied.append(placed.box)
            svg += "<text class=\"point-label\(group.lead.onFront ? " front" : "")\" x=\"\(frame.n(placed.x))\" y=\"\(frame.n(placed.y))\" "
                + "text-anchor=\"\(placed.anchor)\">\(HTMLText.escape(text))</text>\n"
        }
        return svg + "</svg>"
    }

    /// Points that coincide on the chart (within 3 px, e.g. the baseline
    /// evaluated again by every instance of a sweep) share one label naming
    /// the first and counting the others. Front points come first, then
    /// baselines, then the better valued: they get the best places.
    func labelGroups(_ frame: ChartFrame) -> [(lead: Point, x: Double, y: Double, count: Int)] {
        let ordered = points.enumerated().sorted { a, b in
            func rank(_ point: Point) -> Int { point.onFront ? 0 : point.isBaseline ? 1 : 2 }
            return (rank(a.element), -merit(a.element.y), a.offset) < (rank(b.element), -merit(b.element.y), b.offset)
        }.map(\.element)
        var groups: [(lead: Point, x: Double, y: Double, count: Int)] = []
        for point in ordered {
            let x = frame.px(point.x), y = frame.py(point.y)
            if let index = groups.firstIndex(where: { abs($0.x - x) < 3 && abs($0.y - y) < 3 }) {
                groups[index].count += 1
            } else {
                groups.append((point, x, y, 1))
            }
        }
        return groups
    }

    /// The first spot around the point whose label box stays inside the
    /// plot area and overlaps nothing drawn so far, else the least
    /// overlapping; `cost` is 0 for a spot clear of everything.
    static func placeLabel(
        _ text: String, x: Double, y: Double, frame: ChartFrame, occupied: [LabelBox]
    ) -> (x: Double, y: Double, anchor: String, box: LabelBox, cost: Double) {
        let candidates: [(dx: Double, dy: Double, anchor: String)] = [
            (9, 4, "start"), (-9, 4, "end"), (0, -11, "middle"), (0, 19, "middle"),
            (9, -10, "start"), (9, 18, "start"), (-9, -10, "end"), (-9, 18, "end"),
            (9, -24, "start"), (9, 32, "start"), (-9, -24, "end"), (-9, 32, "end"),
        ]
        var best: (x: Double, y: Double, anchor: String, box: LabelBox, cost: Double)?
        var bestCost = Double.infinity
        for candidate in candidates {
            let box = LabelBox(text: text, x: x + candidate.dx, baseline: y + candidate.dy, anchor: candidate.anchor)
            let outside = max(0, frame.plotLeft + 2 - box.minX) + max(0, box.maxX - frame.plotRight + 2)
                + max(0, frame.plotTop - box.minY) + max(0, box.maxY - frame.plotBottom)
            let cost = occupied.reduce(0) { $0 + box.overlap($1) } + outside * 100
            if cost < bestCost {
                bestCost = cost
                best = (x + candidate.dx, y + candidate.dy, candidate.anchor, box, cost)
            }
            if cost == 0 { break }
        }
        return best ?? (x + 9, y + 4, "start", LabelBox(text: text, x: x + 9, baseline: y + 4, anchor: "start"), .infinity)
    }
}

/// Values over training steps, a line per series, with a legend.
struct LineChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    static let palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"]

    var title: String
    var xTitle: String
    var yTitle: String
    var series: [Series]

    func svg() -> String {
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
        // The legend: swatch and name per series, wrapped into rows.
        var legend: [(x: Double, row: Int, name: String)] = []
        var cursor = 70.0, row = 0
        for entry in series {
            let width = 28 + Double(entry.name.count) * 6.8 + 16
            if cursor + width > 560, cursor > 70 {
                row += 1
                cursor = 70
            }
            legend.append((cursor, row, entry.name))
            cursor += width
        }
        let legendRows = series.count > 1 ? row + 1 : 0
        var frame = ChartFrame(
            height: 300 + Double(legendRows) * 18,
            x: ChartScale(minimum: min(xs.min() ?? 0, 0), maximum: xs.max() ?? 1),
            y: ChartScale(covering: ys, margin: 0.05))
        frame.top = 44 + Double(legendRows) * 18
        var svg = frame.open(title: title, xTitle: xTitle, yTitle: yTitle, className: "curve")
        if legendRows > 0 {
            for (index, entry) in legend.enumerated() {
                let color = Self.palette[index % Self.palette.count]
                let y = 44 + Double(entry.row) * 18 - 4
                svg += "<line class=\"swatch\" x1=\"\(frame.n(entry.x))\" y1=\"\(frame.n(y - 4))\" x2=\"\(frame.n(entry.x + 22))\" y2=\"\(frame.n(y - 4))\" stroke=\"\(color)\"/>"
                svg += "<text class=\"legend\" x=\"\(frame.n(entry.x + 28))\" y=\"\(frame.n(y))\">\(HTMLText.escape(entry.name))</text>\n"
            }
        }
        for (index, entry) in series.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            let coordinates = entry.points.map { "\(frame.n(frame.px($0.x))),\(frame.n(frame.py($0.y)))" }
            svg += "<polyline class=\"series\" data-series=\"\(HTMLText.escape(entry.name))\" stroke=\"\(color)\" points=\"\(coordinates.joined(separator: " "))\"/>\n"
            if entry.points.count <= 40 {
                for point in entry.points {
                    svg += "<circle class=\"marker\" fill=\"\(color)\" cx=\"\(frame.n(frame.px(point.x)))\" cy=\"\(frame.n(frame.py(point.y)))\" r=\"2.5\"/>"
                }
                svg += "\n"
            }
        }
        return svg + "</svg>"
    }
}
