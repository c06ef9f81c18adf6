import SqueezeReport
import Testing

@Suite struct ParetoFrontTests {
    typealias Point = ParetoFront.Point

    @Test func handMadeSet() {
        let points = [
            Point(cost: 10, value: 0.90),  // 0: front
            Point(cost: 5, value: 0.88),  // 1: front
            Point(cost: 5, value: 0.85),  // 2: as costly as 1, less accurate
            Point(cost: 20, value: 0.90),  // 3: as accurate as 0, costlier
            Point(cost: 2, value: 0.80),  // 4: front (cheapest)
            Point(cost: 10, value: 0.90),  // 5: equal to 0: neither dominates
            Point(cost: 30, value: 0.95),  // 6: front (most accurate)
            Point(cost: 25, value: 0.70),  // 7: dominated by every other point
        ]
        #expect(ParetoFront.indices(points) == [0, 1, 4, 5, 6])
    }

    @Test func emptyAndSingle() {
        #expect(ParetoFront.indices([]) == [])
        #expect(ParetoFront.indices([Point(cost: 1, value: 0)]) == [0])
    }
}

@Suite struct LowerIsBetterParetoFrontTests {
    typealias Point = ParetoFront.Point

    @Test func perplexityLikeValues() {
        let points = [
            Point(cost: 20, value: 30),  // 0: front (lowest perplexity)
            Point(cost: 14, value: 33),  // 1: dominated by 2: costlier and worse
            Point(cost: 4, value: 31),  // 2: front
            Point(cost: 2, value: 900),  // 3: front (cheapest)
            Point(cost: 4, value: 31),  // 4: equal to 2: both stay
            Point(cost: 25, value: 30),  // 5: as good as 0, costlier
        ]
        #expect(ParetoFront.indices(points, better: .lower) == [0, 2, 3, 4])
        #expect(ParetoFront.indices(points, better: .higher) == [3], "read the other way, the cheapest is also the best")
        #expect(ParetoFront.indices(points) == ParetoFront.indices(points, better: .higher))
    }
}
