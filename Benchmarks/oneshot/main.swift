// Times SparseGPT, GPTQ, Wanda and magnitude on MiniLM-L6-H384's layer shapes
// (384×384, 1536×384 = ffn up, 384×1536 = ffn down) with random weights and
// correlated calibration inputs. Built with `swiftc -O` from the OneShot
// sources by `time-oneshot.sh` (no package build needed).
import Foundation

struct Generator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func normal() -> Float {
        let u1 = Double(next() >> 11) * 0x1p-53 + 0x1p-54
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// Wall and CPU (this thread) seconds of `body`: on a loaded machine the CPU time is the cost.
func seconds(_ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
    func cpuNow() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
    let start = DispatchTime.now().uptimeNanoseconds
    let cpuStart = cpuNow()
    try body()
    return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, cpuNow() - cpuStart)
}

let tokens = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 4096
var generator = Generator(state: 1)
print("tokens per layer: \(tokens) (single thread)")
for (rows, cols) in [(384, 384), (1536, 384), (384, 1536)] {
    let weight = (0..<(rows * cols)).map { _ in generator.normal() * 0.05 }
    let inputs = (0..<(tokens * cols)).map { _ in generator.normal() }
    var statistics = try LayerInputStatistics(columns: cols)
    let calibration = try seconds { try statistics.accumulate(rows: inputs, tokens: tokens) }
    var timings: [(String, (wall: Double, cpu: Double))] = [("statistics (plain Double loops)", calibration)]
    timings.append(("Hessian factor only", try seconds {
        _ = try HessianInverse.upperCholeskyOfInverse(hessian: statistics.hessian, n: cols, dampening: 0.01)
    }))
    for (name, target) in [("50%", SparsityTarget.unstructured(0.5)), ("2:4", .nOfM(n: 2, m: 4))] {
        for method in PruningMethod.allCases {
            timings.append(("\(method.rawValue) \(name)", try seconds {
                _ = try OneShotPruning.prune(weight: weight, rows: rows, cols: cols, statistics: statistics, method: method, target: target)
            }))
        }
    }
    for (name, grid) in [("4-bit g128", WeightGrid(bits: 4, groupSize: 128)), ("4-bit per row", WeightGrid(bits: 4))] {
        timings.append(("gptq \(name)", try seconds {
            _ = try GPTQ.quantize(weight: weight, rows: rows, cols: cols, statistics: statistics, options: GPTQOptions(grid: grid))
        }))
        timings.append(("gptq \(name) act order", try seconds {
            _ = try GPTQ.quantize(
                weight: weight, rows: rows, cols: cols, statistics: statistics, options: GPTQOptions(grid: grid, actOrder: true))
        }))
        timings.append(("rtn \(name)", try seconds { _ = try grid.roundToNearest(weight: weight, rows: rows, cols: cols) }))
    }
    for (name, time) in timings {
        print(String(format: "[%4d x %4d] %-36@ cpu %7.3f s  wall %7.3f s", rows, cols, name as NSString, time.cpu, time.wall))
    }
}
