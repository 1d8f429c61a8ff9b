// The benchmark executable may use FoundationEssentials (swift-argument-parser links it
// anyway) for JSON; the NormCL library itself imports no Foundation.
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// A peer library's times for the suite's cases, keyed by normcl-bench's case name.
///
/// Written by `Benchmarks/peers/pytorch_norms.py` as `{"peer": …, "cases": [{"name",
/// "median_ms", "min_ms"}]}`; the benchmark runs that script itself (``run(script:cases:…)``)
/// or reads a file written earlier (``load(from:)``), e.g. from PyTorch CUDA on a GPU machine.
struct PeerResults: Sendable {
    /// What the peer is, e.g. "PyTorch 2.13.0+cpu CPU, 2 threads".
    let peer: String
    /// Median wall time per call, ms, by case name.
    let medianMilliseconds: [String: Double]

    private struct File: Decodable {
        struct Case: Decodable {
            let name: String
            let median_ms: Double
        }
        let peer: String
        let cases: [Case]
    }

    /// Reads a peer JSON file.
    static func load(from path: String) throws -> PeerResults {
        guard let text = readFile(path) else { throw BenchmarkError.cannotRead(path) }
        let file = try JSONDecoder().decode(File.self, from: Data(text.utf8))
        return PeerResults(
            peer: file.peer,
            medianMilliseconds: Dictionary(file.cases.map { ($0.name, $0.median_ms) }, uniquingKeysWith: { a, _ in a }))
    }

    /// Why there is no peer column, or the peer's results: runs `script` with python3 on
    /// exactly `cases` (the script's output goes to stderr as progress).
    ///
    /// Nothing here fails the benchmark: a missing script, python3 or torch only means
    /// the column says so.
    static func run(
        script: String, cases: [BenchmarkCase], device: String, threads: Int, iterations: Int
    ) -> Result<PeerResults, PeerUnavailable> {
        guard access(script, R_OK) == 0 else { return .failure(PeerUnavailable("no peer script at \(script)")) }
        let stem = "/tmp/normcl-bench-\(getpid())"
        let casesPath = stem + "-cases.json", resultsPath = stem + "-peer.json"
        defer {
            unlink(casesPath)
            unlink(resultsPath)
        }
        do {
            try Report.write(casesJSON(cases), to: casesPath)
        } catch {
            return .failure(PeerUnavailable("\(error)"))
        }
        let status = spawn([
            "python3", script, "--cases", casesPath, "--device", device, "--threads", String(threads),
            "--iterations", String(iterations), "--json", resultsPath,
        ])
        switch status {
        case 0: break
        case 3: return .failure(PeerUnavailable("PyTorch is not installed (python3 cannot import torch)"))
        case 127: return .failure(PeerUnavailable("python3 not found"))
        default: return .failure(PeerUnavailable("the peer script failed (exit status \(status))"))
        }
        do {
            return .success(try load(from: resultsPath))
        } catch {
            return .failure(PeerUnavailable("cannot read the peer's results: \(error)"))
        }
    }

    /// The cases as the peer script's `--cases` input.
    static func casesJSON(_ cases: [BenchmarkCase]) -> String {
        let items = cases.map { c in
            "  {\"name\": \(Report.jsonString(c.name)), \"op\": \(Report.jsonString(c.op)), "
                + "\"shape\": [\(c.shape.map(String.init).joined(separator: ", "))], "
                + "\"layout\": \"\(c.layout == .channelsFirst ? "NCHW" : "NHWC")\", "
                + "\"dtype\": \"\(c.elementType == .float32 ? "f32" : "f16")\"}"
        }
        return "[\n" + items.joined(separator: ",\n") + "\n]\n"
    }

    /// Runs `arguments` (found on PATH) with its stdout sent to our stderr; its exit
    /// status, or 127 when it cannot be started.
    private static func spawn(_ arguments: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        guard posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ) == 0 else { return 127 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS are macros that do not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    private static func readFile(_ path: String) -> String? {
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
