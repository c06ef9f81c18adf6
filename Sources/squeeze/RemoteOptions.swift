import ArgumentParser
import Foundation
import SqueezeStore
import SqueezeSupport

/// The shared HTTP cache: `--remote URL`, else `$SQUEEZE_REMOTE_CACHE`, else
/// the site file's `cache.remote`; `--no-remote` turns it off. Credentials go in the URL's user information
/// (e.g. from a CI secret in the environment variable) or in `~/.netrc`; they
/// are never printed or recorded (`RemoteCache.displayURL`).
struct RemoteOptions: ParsableArguments {
    @Option(name: .customLong("remote"), help: ArgumentHelp(
        "Shared HTTP cache (Bazel's HTTP cache layout: GET/PUT/HEAD of cas/ and ac/); default $SQUEEZE_REMOTE_CACHE.",
        valueName: "url"))
    var url: String?

    @Flag(name: .customLong("no-remote"), help: "Use only the local cache, even when $SQUEEZE_REMOTE_CACHE is set.")
    var disabled = false

    /// The remote cache to use, or nil for none; a malformed URL is bad input.
    func remoteCache(site: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RemoteCache? {
        guard !disabled else { return nil }
        let flag = url.map { (text: $0, source: "--remote") }
        let variable = environment["SQUEEZE_REMOTE_CACHE"].flatMap { $0.isEmpty ? nil : (text: $0, source: "$SQUEEZE_REMOTE_CACHE") }
        guard let given = flag ?? variable ?? site.map({ (text: $0, source: "the site file's `cache.remote`") }) else { return nil }
        guard let parsed = URL(string: given.text), let scheme = parsed.scheme?.lowercased(),
              scheme == "http" || scheme == "https", parsed.host?.isEmpty == false
        else {
            // Not echoed: the text may hold a password.
            throw UserError("\(given.source) must be an http:// or https:// URL with a host, e.g. https://cache.example.org/squeeze")
        }
        return RemoteCache(baseURL: parsed)
    }
}
