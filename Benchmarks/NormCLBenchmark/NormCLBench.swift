import ArgumentParser
import NormCL

#if canImport(Glibc)
import Glibc
#endif

@main
struct NormCLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "normcl-bench",
        abstract: "Benchmarks NormCL's normalization kernels: GB/s against the device's copy bandwidth and the CPU reference.")

    @Option(help: "Device: an index, 'gpu', 'cpu', a name substring, or 'reference' (default: NORMCL_DEVICE, else the first GPU, else the first device).")
    var device: String?

    @Option(help: "Timed iterations per case (after warm-up).")
    var iterations = 20

    @Option(help: "Untimed warm-up iterations per case (after the first call).")
    var warmup = 3

    @Flag(help: "Small shapes and few iterations: a smoke run for CI.")
    var quick = false

    @Option(help: "Run only cases whose name contains this text (case-insensitive).")
    var filter: String?

    @Option(help: "Write every figure as JSON to this file.")
    var json: String?

    mutating func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
    }

    mutating func run() throws {
        let backend = try selectBackend()
        let iterations = quick ? min(self.iterations, 5) : self.iterations
        let warmup = quick ? min(self.warmup, 1) : self.warmup
        log("device: \(describe(backend))")  // the library itself reports a CPU fallback once

        var copyBandwidth: Double? = nil
        if let runtime = backend.runtime {
            log("measuring copy bandwidth…")
            copyBandwidth = try runtime.measureCopyBandwidth(megabytes: quick ? 64 : 256, iterations: quick ? 5 : 20)
            log("copy bandwidth: \(Report.format(copyBandwidth, digits: 1)) GB/s")
        }

        let cases = BenchmarkCase.suite(quick: quick).filter { c in
            filter.map { c.name.lowercased().contains($0.lowercased()) } ?? true
        }
        var results: [CaseResult] = []
        for (index, benchmarkCase) in cases.enumerated() {
            log("[\(index + 1)/\(cases.count)] \(benchmarkCase.name)")
            results.append(try measure(benchmarkCase, on: backend, iterations: iterations, warmup: warmup))
        }

        print("NormCL benchmark on \(describe(backend))")
        if let copyBandwidth { print("device copy bandwidth (float4 copy, measured now): \(Report.format(copyBandwidth, digits: 1)) GB/s") }
        print("median of \(iterations) iterations; GB/s = ideal bytes (input read once + output written once + parameters) / kernel time\n")
        print(Report.table(results, copyBandwidth: copyBandwidth))
        if let json {
            try Report.write(Report.json(results, device: describe(backend), copyBandwidth: copyBandwidth, iterations: iterations), to: json)
            log("wrote \(json)")
        }
        if results.contains(where: { $0.matchesReference == false }) {
            log("ERROR: some results do not match the CPU reference (see 'check')")
            throw ExitCode(1)
        }
    }

    func selectBackend() throws -> Backend {
        guard let device else { return try Backend.default }
        if device.lowercased() == "reference" { return .reference }
        return .openCL(try OpenCLRuntime(device: DeviceDiscovery.select(device, from: DeviceDiscovery.devices())))
    }

    func describe(_ backend: Backend) -> String {
        switch backend {
        case .openCL(let runtime): runtime.device.description
        case .reference: "CPU reference path (no OpenCL)"
        }
    }

    func measure(_ benchmarkCase: BenchmarkCase, on backend: Backend, iterations: Int, warmup: Int) throws -> CaseResult {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<benchmarkCase.count).map { _ in Float.random(in: -2...2, using: &rng) + 0.5 }
        let run = try benchmarkCase.prepare(values, backend)
        let clock = ContinuousClock()

        // First call: includes program build and kernel code generation.
        var start = clock.now
        let first = try run()
        let output = try first.output.toArray()
        let firstCall = (clock.now - start).milliseconds

        for _ in 0..<warmup { _ = try run().events.spanNanoseconds() }
        var kernelTimes: [Double] = []
        var hostTimes: [Double] = []
        for _ in 0..<iterations {
            start = clock.now
            let (result, events) = try run()
            if let last = events.last { try last.wait() } else { _ = try result.toArray() }
            hostTimes.append((clock.now - start).milliseconds)
            if !events.isEmpty { kernelTimes.append(Double(try events.spanNanoseconds()) / 1e6) }
        }

        // Check the output once against the reference (and time the reference).
        var referenceTime: Double? = nil
        var maxError: Double? = nil
        var matches: Bool? = nil
        if case .openCL = backend {
            let reference = try benchmarkCase.prepare(values, .reference)
            start = clock.now
            let expected = try reference().output.toArray()
            referenceTime = (clock.now - start).milliseconds
            var worst = 0.0
            var ok = true
            for (a, e) in zip(output, expected) {
                let error = abs(Double(a) - Double(e))
                worst = max(worst, error.isNaN ? .infinity : error)
                if !(error <= benchmarkCase.tolerance * (1 + abs(Double(e)))) { ok = false }
            }
            maxError = worst
            matches = ok
        }
        return CaseResult(
            name: benchmarkCase.name, op: benchmarkCase.op, shape: benchmarkCase.shape,
            layout: benchmarkCase.layout.rawValue, dtype: benchmarkCase.elementType.rawValue, idealBytes: benchmarkCase.idealBytes,
            firstCallMilliseconds: firstCall, kernel: kernelTimes.isEmpty ? nil : TimingSummary(kernelTimes),
            host: TimingSummary(hostTimes), referenceMilliseconds: referenceTime, maxError: maxError, matchesReference: matches)
    }

    func log(_ message: String) {
        var line = message + "\n"
        _ = line.withUTF8 { write(2, $0.baseAddress, $0.count) }
    }
}
