import Foundation
import Glibc
import Testing

@testable import SqueezeStore
import SqueezeSupport

@Suite struct StoreHashingTests {
    @Test func digestAcceptsOnlySixtyFourLowercaseHexDigits() throws {
        let valid = String(repeating: "0123456789abcdef", count: 4)
        let digest = try #require(Digest(hex: valid))
        #expect(digest.description == "sha256:" + valid)
        #expect(digest.short == "0123456789ab")
        for bad in ["", String(valid.dropLast()), valid + "0", valid.uppercased(), String(valid.dropLast()) + "g",
                    "sha256:" + valid, String(valid.dropLast()) + " ", String(valid.dropLast(2)) + "é"] {
            #expect(Digest(hex: bad) == nil, "accepted \(bad)")
        }
    }

    @Test func digestCodesAsPrefixedStringAndRejectsMalformedJSON() throws {
        let digest = Hashing.sha256(Array("abc".utf8))
        let encoded = try JSONEncoder().encode([digest])
        #expect(String(decoding: encoded, as: UTF8.self) == "[\"sha256:\(digest.hex)\"]")
        #expect(try JSONDecoder().decode([Digest].self, from: encoded) == [digest])
        for bad in ["[\"\(digest.hex)\"]", "[\"sha256:\(digest.hex.uppercased())\"]", "[\"md5:\(digest.hex)\"]", "[\"sha256:abc\"]", "[42]"] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode([Digest].self, from: Data(bad.utf8)) }
        }
    }

    @Test func bytesMatchPublishedVectors() {
        #expect(Hashing.sha256([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hashing.sha256(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            Hashing.sha256(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hex
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            Hashing.sha256([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)).hex
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Sizes around the read-buffer boundary, compared with coreutils.
    @Test(arguments: [0, 1, Hashing.readSize - 1, Hashing.readSize, 3 * Hashing.readSize + 12_345])
    func fileHashMatchesSha256sum(size: Int) throws {
        let directory = try StoreTestDirectory()
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { raw in
            for offset in stride(from: 0, to: raw.count - 7, by: 8) {
                raw.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self)
            }
        }
        let path = try directory.write("data.bin", bytes)
        let expected = try storeTestRun("/usr/bin/sha256sum", [path]).split(separator: " ").first.map(String.init)
        #expect(try Hashing.sha256(fileAt: path).hex == expected)
        #expect(Hashing.sha256(bytes) == (try Hashing.sha256(fileAt: path)))
    }

    @Test func hashingAMissingFileThrowsWithItsPath() throws {
        let directory = try StoreTestDirectory()
        let missing = directory.path + "/missing"
        let error = try #require(throws: StoreError.self) { try Hashing.sha256(fileAt: missing) }
        #expect(error.kind == .io)
        #expect(error.description.contains(missing))
        let fifo = directory.path + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        let fifoError = try #require(throws: StoreError.self) { try Hashing.sha256(fileAt: fifo) }
        #expect(fifoError.kind == .unsupported)
    }

    /// Manual throughput check, off by default (needs a file as large as the
    /// page cache allows): `SQUEEZE_HASH_BENCH_MB=1024 swift test --filter largeFileThroughput`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SQUEEZE_HASH_BENCH_MB"] != nil))
    func largeFileThroughput() throws {
        let megabytes = Int(ProcessInfo.processInfo.environment["SQUEEZE_HASH_BENCH_MB"] ?? "") ?? 1024
        let directory = try StoreTestDirectory()
        let path = directory.path + "/large.bin"
        _ = try storeTestRun("/usr/bin/dd", ["if=/dev/urandom", "of=\(path)", "bs=1M", "count=\(megabytes)", "status=none"])
        _ = try Hashing.sha256(fileAt: path)  // warm the page cache
        let clock = ContinuousClock()
        var digest: Digest?
        let elapsed = try clock.measure { digest = try Hashing.sha256(fileAt: path) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("sha256(fileAt:) \(megabytes) MiB in \(seconds) s = \(Double(megabytes) * 1_048_576 / seconds / 1e9) GB/s")
        let expected = try storeTestRun("/usr/bin/sha256sum", [path]).split(separator: " ").first.map(String.init)
        #expect(digest?.hex == expected)
    }
}
