import Foundation
import SqueezeEngine
import Synchronization

/// Human-readable progress on stderr: one live line per running stage on a
/// terminal, plain log lines otherwise; a summary table on stdout at the end.
final class ConsoleDisplay: RunObserver, Sendable {
    private struct Running {
        var started: Date
        var progress: StageProgress?
    }

    private struct State {
        var running: [String: Running] = [:]
        var order: [String] = []
        var liveLines = 0
        var lastDraw = Date.distantPast
    }

    private let live: Bool
    private let state = Mutex(State())

    init(live: Bool) {
        self.live = live
    }

    func handle(_ event: RunEvent) {
        state.withLock { state in
            switch event {
            case .started(let runID, _, let stages):
                emit("squeeze: run \(runID) (\(stages.count) stages)", in: &state)
            case .stageStarted(let id, let cores):
                state.running[id] = Running(started: Date())
                state.order.append(id)
                if !live { emit("\(id): running\(cores > 1 ? " on \(cores) cores" : "")", in: &state) } else { redraw(&state) }
            case .stageProgress(let id, let progress):
                state.running[id]?.progress = progress
                if live {
                    if Date().timeIntervalSince(state.lastDraw) > 0.1 { redraw(&state) }
                } else if let message = progress.message {
                    emit("\(id): \(message)", in: &state)
                }
            case .stageFinished(let record):
                state.running[record.id] = nil
                state.order.removeAll { $0 == record.id }
                emit(Self.describe(record), in: &state)
            case .warning(let text):
                emit("warning: \(text)", in: &state)
            case .finished(let record):
                clearLive(&state)
                print(Self.summary(record))
            }
        }
    }

    /// Refreshes the live lines (elapsed time, ETA) between events.
    func tick() {
        guard live else { return }
        state.withLock { state in
            if !state.order.isEmpty { redraw(&state) }
        }
    }

    static func describe(_ record: StageRecord) -> String {
        let time = String(format: "%.2fs", record.wallSeconds)
        switch record.status {
        case .cached: return "\(record.id): cached" + (record.cache == "remote" ? " (remote)" : "")
        case .ran: return "\(record.id): done in \(time)" + (record.reason.map { " (\($0))" } ?? "")
        case .failed: return "\(record.id): FAILED after \(time): \(record.reason ?? "")" + (record.log.map { "\n  log: \($0)" } ?? "")
        case .skipped, .notStarted: return "\(record.id): \(record.status.rawValue): \(record.reason ?? "")"
        case .cancelled: return "\(record.id): cancelled"
        }
    }

    static func summary(_ record: RunRecord) -> String {
        let counts = Dictionary(grouping: record.stages, by: \.status).mapValues(\.count)
        let parts = [StageRecord.Status.ran, .cached, .failed, .skipped, .notStarted, .cancelled].compactMap { status in
            counts[status].map { "\($0) \(status.rawValue)" }
        }
        let remote = record.stages.filter { $0.cache == "remote" }.count
        let fromRemote = remote > 0 ? " (\(remote) from the remote cache)" : ""
        return "\(record.status.rawValue): \(parts.joined(separator: ", "))\(fromRemote) in \(String(format: "%.2f", record.wallSeconds))s — run \(record.id)"
    }

    private func emit(_ line: String, in state: inout State) {
        clearLive(&state)
        FileHandle.standardError.write(Data((line + "\n").utf8))
        if live { redraw(&state) }
    }

    private func clearLive(_ state: inout State) {
        guard live, state.liveLines > 0 else { return }
        FileHandle.standardError.write(Data("\u{1B}[\(state.liveLines)F\u{1B}[J".utf8))
        state.liveLines = 0
    }

    private func redraw(_ state: inout State) {
        guard live else { return }
        clearLive(&state)
        var text = ""
        for id in state.order {
            guard let running = state.running[id] else { continue }
            let elapsed = Date().timeIntervalSince(running.started)
            var line = "  \(id)  \(Self.clock(elapsed))"
            if let fraction = running.progress?.fraction, fraction > 0 {
                line += String(format: "  %3.0f%%", fraction * 100)
                line += "  ETA \(Self.clock(elapsed * (1 - fraction) / fraction))"
            }
            if let message = running.progress?.message { line += "  \(message)" }
            text += line + "\n"
        }
        FileHandle.standardError.write(Data(text.utf8))
        state.liveLines = state.order.count
        state.lastDraw = Date()
    }

    static func clock(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.down))
        return total >= 3600
            ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
            : String(format: "%d:%02d", total / 60, total % 60)
    }
}

/// `--json`: one JSON object per line on stdout for every event.
final class JSONLinesDisplay: RunObserver, Sendable {
    private let lock = Mutex(())

    private struct Line<Payload: Encodable>: Encodable {
        var event: String
        var payload: Payload
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(event, forKey: Key("event"))
            try container.encode(payload, forKey: Key(event == "run_finished" ? "run" : "data"))
        }
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private struct Started: Encodable { var run_id: String; var directory: String; var stages: [String] }
    private struct StageStart: Encodable { var stage: String; var cores: Int }
    private struct Progress: Encodable { var stage: String; var fraction: Double?; var message: String? }
    private struct Warning: Encodable { var message: String }

    func handle(_ event: RunEvent) {
        let line: String
        switch event {
        case .started(let id, let directory, let stages):
            line = Line(event: "run_started", payload: Started(run_id: id, directory: directory, stages: stages)).compactJSON
        case .stageStarted(let id, let cores):
            line = Line(event: "stage_started", payload: StageStart(stage: id, cores: cores)).compactJSON
        case .stageProgress(let id, let progress):
            line = Line(event: "stage_progress", payload: Progress(stage: id, fraction: progress.fraction, message: progress.message)).compactJSON
        case .stageFinished(let record):
            line = Line(event: "stage_finished", payload: record).compactJSON
        case .warning(let message):
            line = Line(event: "warning", payload: Warning(message: message)).compactJSON
        case .finished(let record):
            line = Line(event: "run_finished", payload: record).compactJSON
        }
        lock.withLock { _ in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
    }
}
