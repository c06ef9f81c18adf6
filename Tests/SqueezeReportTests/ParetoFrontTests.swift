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
