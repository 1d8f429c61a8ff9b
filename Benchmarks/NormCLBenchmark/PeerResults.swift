// The benchmark executable may use FoundationEssentials (swift-argument-parser links it
// anyway) for JSON; the NormCL library itself imports no Foundation.
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// A peer library's times for the suite's cases, keyed by normcl-bench's case name, read
/// from a file the peer script wrote earlier in batch mode (``load(from:)``), e.g. PyTorch
/// CUDA on a GPU machine; a live peer is a ``PeerProcess``.
///
/// The file is `{"peer", "allocator"?, "cases": [{"name", "median_ms", "min_ms"?, "p10_ms"?,
/// "p90_ms"?}]}`; files from before the spread was recorded lack the optional fields.
struct PeerResults: Sendable {
    /// What the peer is, e.g. "PyTorch 2.13.0+cpu CPU, 2 threads".
    let peer: String
    /// How the peer's allocator was set (see the script's `keep_freed_memory`), if it said.
    let allocator: String?
    /// Per-call wall times, ms, by case name.
    let timings: [String: TimingSummary]

    private struct File: Decodable {
        struct Case: Decodable {
            let name: String
            let median_ms: Double
            let min_ms: Double?
            let p10_ms: Double?
            let p90_ms: Double?
        }
        let peer: String
        let allocator: String?
        let cases: [Case]
    }

    /// Reads a peer JSON file.
    static func load(from path: String) throws -> PeerResults {
        guard let text = readFile(path) else { throw BenchmarkError.cannotRead(path) }
        let file = try JSONDecoder().decode(File.self, from: Data(text.utf8))
        let timings = file.cases.map { c in
            (c.name, TimingSummary(median: c.median_ms, minimum: c.min_ms ?? .nan, p10: c.p10_ms ?? .nan, p90: c.p90_ms ?? .nan, samples: 0))
        }
        return PeerResults(peer: file.peer, allocator: file.allocator, timings: Dictionary(timings, uniquingKeysWith: { a, _ in a }))
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let read = fread(&buffer, 1, buffer.count, file)
            if read <= 0 { break }
            bytes += buffer[0..<read]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Why the peer column is empty, said in the report.
struct PeerUnavailable: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where the peer column's figures come from.
enum Peer {
    /// The peer script running beside the benchmark, timed case by case in batches that
    /// alternate with NormCL's iterations.
    case live(PeerProcess)
    /// A peer JSON written earlier (`--peer-json`), timed elsewhere or at another moment.
    case recorded(PeerResults)

    var name: String {
        switch self {
        case .live(let process): process.peer
        case .recorded(let results): results.peer
        }
    }
    var allocator: String? {
        switch self {
        case .live(let process): process.allocator
        case .recorded(let results): results.allocator
        }
    }
}
