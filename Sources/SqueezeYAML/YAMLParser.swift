import CYAML

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads one YAML document into a `YAMLNode` tree with source positions,
/// using libyaml's event parser.
///
/// Every problem is reported as a `Diagnostic` at a 1-based line:column in
/// `file`. Input is checked before libyaml sees it (size, UTF-8, NUL bytes,
/// control characters); the tree is checked as it is built (single document,
/// scalar and unique keys, alias budget, nesting depth). See `YAMLLimits`.
public enum YAMLParser {
    /// Parses one YAML document. Returns nil for an empty document (only
    /// comments/whitespace, or a bare `---`).
    public static func parse(_ bytes: [UInt8], file: String, limits: YAMLLimits = .default) throws(Diagnostic) -> YAMLNode? {
        let source = try SourceText(validating: bytes, file: file, limits: limits)
        return try parse(source, limits: limits)
    }

    /// Parses one YAML document from text.
    public static func parse(_ text: String, file: String, limits: YAMLLimits = .default) throws(Diagnostic) -> YAMLNode? {
        try parse(Array(text.utf8), file: file, limits: limits)
    }

    /// Reads the file and parses it. Directories, unreadable files and files
    /// larger than `limits.maxBytes` are refused before they are read whole.
    /// Positions name the file `displayName`, or `path` when it is nil.
    public static func parseFile(atPath path: String, displayName: String? = nil, limits: YAMLLimits = .default) throws(Diagnostic) -> YAMLNode? {
        let name = displayName ?? path
        let bytes = try readFile(atPath: path, name: name, limit: limits.maxBytes)
        return try parse(bytes, file: name, limits: limits)
    }

    private static func parse(_ source: SourceText, limits: YAMLLimits) throws(Diagnostic) -> YAMLNode? {
        let count = source.bytes.count
        // libyaml reads from this buffer until `yaml_parser_delete`; it must not move.
        let input = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(count, 1))
        defer { input.deallocate() }
        _ = input.initialize(fromContentsOf: source.bytes)

        // Heap-allocated because libyaml keeps a pointer to the parser inside itself.
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) != 0 else {
            throw Diagnostic("out of memory while parsing YAML", at: SourceLocation(file: source.file, line: 1, column: 1))
        }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_input_string(parser, input.baseAddress, count)

        var builder = TreeBuilder(limits: limits)
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(parser, &event) != 0 else {
                throw LibYAMLErrors.diagnostic(for: parser.pointee, in: source)
            }
            defer { yaml_event_delete(&event) }
            if try builder.consume(event, in: source) { break }
        }
        return builder.result
    }

    /// The file's bytes, read at most `limit + 1` bytes deep.
    private static func readFile(atPath path: String, name: String, limit: Int) throws(Diagnostic) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw cannotRead(name, errno: errno) }
        defer { close(descriptor) }

        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw cannotRead(name, errno: errno) }
        if info.st_mode & S_IFMT == S_IFDIR {
            throw Diagnostic("`\(name)` is a directory, not a YAML file")
        }
        if info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) > limit {
            throw Diagnostic(
                "file is \(info.st_size) bytes; recipes are limited to \(YAMLLimits.describe(bytes: limit))",
                at: SourceLocation(file: name, line: 1, column: 1))
        }

        // Read up to one byte past the limit: enough to tell an oversized
        // stream (a pipe, a file that grew) without reading it whole.
        let capacity = limit < Int.max ? limit + 1 : limit
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count < capacity {
            let wanted = min(chunk.count, capacity - bytes.count)
            let got = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, wanted) }
            if got < 0 {
                if errno == EINTR { continue }
                throw cannotRead(name, errno: errno)
            }
            if got == 0 { break }
            bytes.append(contentsOf: chunk[0..<got])
        }
        if bytes.count > limit {
            throw Diagnostic(
                "file is more than \(limit) bytes; recipes are limited to \(YAMLLimits.describe(bytes: limit))",
                at: SourceLocation(file: name, line: 1, column: 1))
        }
        return bytes
    }

    private static func cannotRead(_ name: String, errno code: Int32) -> Diagnostic {
        let reason = String(cString: strerror(code))
        return Diagnostic("cannot read `\(name)`: \(reason)")
    }
}
