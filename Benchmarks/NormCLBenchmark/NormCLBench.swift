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

    @Option(help: "Draw GB/s per case (NormCL, the peer, the copy bandwidth) as an SVG chart in this file.")
    var plot: String?

    @Option(help: "Peer to time the same cases with: 'pytorch' (runs --peer-script with python3 when torch imports, its iterations interleaved with NormCL's) or 'none'.")
    var peer: PeerChoice = .pytorch

    @Flag(help: "Start with empty program caches: NormCL's disk cache and PoCL's kernel cache in fresh temporary directories, so first calls show a cold start.")
    var coldCache = false

    @Option(help: "The PyTorch peer script.")
    var peerScript = "Benchmarks/peers/pytorch_norms.py"

    @Option(help: "With the PyTorch peer: timed iterations per batch, NormCL's and the peer's batches alternating within each case so that both see the same machine.")
    var peerBatch = 5

    @Flag(help: "Print each case's kernels with their median device times (always in the JSON).")
    var kernels = false

    @Option(help: "Merge a peer JSON written earlier by the peer script (e.g. PyTorch CUDA on another machine) instead of running it.")
    var peerJSON: String?

    @Flag(help: "Run each case as an application's steady-state loop on its own OpenCL objects: a context and queue the benchmark makes and NormCL adopts, inputs in the benchmark's buffers, each call writing into the previous call's results after its last event (Switchable Norm allocates its branch statistics).")
    var callerBuffers = false

    @Flag(help: "Instead of the suite: tune the launch parameters on this device (coordinate descent over a set of cases) and print its tuning-database entry.")
    var tune = false

    @Option(help: "With --tune: write the entry into this tuning database file (Sources/NormCL/Runtime/TuningDatabase.swift), replacing the device's old entry.")
    var tuneDatabase: String?

    @Option(help: "Instead of the suite: synchronized BatchNorm over this many parts in one process (each (8,64,56,56) f32 NCHW on its own runtime on the device) against local BatchNorm of one part, forward + backward.")
    var syncParts: Int?

    enum PeerChoice: String, ExpressibleByArgument {
        case pytorch, none
    }

    mutating func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard peerBatch >= 1 else { throw ValidationError("--peer-batch must be at least 1") }
    }

    mutating func run() throws {
        // Before any OpenCL call: the drivers read their cache locations once.
        if coldCache { try useFreshCacheDirectories() }
        let backend = try selectBackend()
        let iterations = quick ? min(self.iterations, 5) : self.iterations
        let warmup = quick ? min(self.warmup, 1) : self.warmup
        if tune {
            try runTuner(on: backend, iterations: iterations, warmup: warmup)
            return
        }
        if let syncParts {
            try SyncBatchNormBench(parts: syncParts, quick: quick).run(on: backend, iterations: iterations, warmup: warmup)
            return
        }
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
        let peer = startPeer(on: backend)
        let livePeer: PeerProcess? = if case .success(.live(let process)) = peer { process } else { nil }
        defer { livePeer?.finish() }
        var results: [CaseResult] = []
        for (index, benchmarkCase) in cases.enumerated() {
            log("[\(index + 1)/\(cases.count)] \(benchmarkCase.name)")
            var result = try measure(benchmarkCase, on: backend, iterations: iterations, warmup: warmup, peer: livePeer)
            if case .success(.recorded(let recorded)) = peer { result.peer = recorded.timings[result.name] }
            if kernels {
                for kernel in result.kernelBreakdown { log("    \(kernel.name): \(Report.format(kernel.median)) ms") }
            }
            if result.looksBusy { log("    spread says busy: host p90/p10 \(Report.format(result.host.spread, digits: 2)), peer \(Report.format(result.peer?.spread, digits: 2))") }
            results.append(result)
        }
        livePeer?.finish()

        print("NormCL benchmark on \(describe(backend))")
        if let copyBandwidth {
            print("device DRAM copy bandwidth (float4 copy of 2 × \(quick ? 64 : 256) MiB, measured now): \(Report.format(copyBandwidth, digits: 1)) GB/s")
        }
        print("median of \(iterations) iterations; GB/s = ideal bytes (input read once + output written once + parameters) / kernel time")
        print("copy GB/s = a float4 copy moving the case's ideal bytes, run after each iteration (same size, same moment);")
        print("% copy = median over iterations of copy time / kernel time (100%: the op runs as fast as copying its own traffic)")
        let peerTiming = peerTimingDescription(peer)
        switch peer {
        case .success(let peer):
            print("× PyTorch = \(peer.name) median wall time / NormCL's host ms (above 1: NormCL faster); \(peerTiming ?? "")")
            print("peer allocator: \(peer.allocator ?? "not recorded")")
            if let lost = livePeer?.lost { print("the peer was lost mid-run, \(lost): later cases have no peer figure") }
        case .failure(let reason): print("× PyTorch: no peer (\(reason))")
        }
        print("p90/p10 = spread of the per-iteration times; ! marks a spread that says the machine was busy (\(TimingSummary.busyRule))\n")
        print(Report.table(results))
        if let warning = Report.busyWarning(results) { print("\n" + warning) }
        if case .openCL(let runtime) = backend {
            print("\n" + Report.programSummary(results, runtime: runtime.programStatistics, coldCache: coldCache))
        }
        let peerName = try? peer.get().name
        if let json {
            try Report.write(
                Report.json(
                    results, device: describe(backend), copyBandwidth: copyBandwidth, iterations: iterations, peer: peerName,
                    peerAllocator: try? peer.get().allocator, peerTiming: peerTiming,
                    programs: backend.runtime?.programStatistics, coldCache: coldCache),
                to: json)
            log("wrote \(json)")
        }
        if let plot {
            try Report.write(Plot.svg(results, device: describe(backend), copyBandwidth: copyBandwidth, peer: peerName), to: plot)
            log("wrote \(plot)")
        }
        if results.contains(where: { $0.matchesReference == false }) {
            log("ERROR: some results do not match the CPU reference (see 'check')")
            throw ExitCode(1)
        }
    }

    /// The peer, or why there is none (never an error: the column then says so). A live
    /// peer is started once, before the first case, and timed inside ``measure``.
    func startPeer(on backend: Backend) -> Result<Peer, PeerUnavailable> {
        if let peerJSON {
            return Result { .recorded(try PeerResults.load(from: peerJSON)) }.mapError { PeerUnavailable("\($0)") }
        }
        guard peer == .pytorch else { return .failure(PeerUnavailable("--peer none")) }
        // The same thread count as the OpenCL device's compute units (one thread beside the
        // single-threaded reference path); PyTorch CUDA for a GPU.
        let device = backend.runtime?.device
        log("starting the PyTorch peer…")
        let result = PeerProcess.start(
            script: peerScript, device: device?.kind == .gpu ? "cuda" : "cpu",
            threads: device.map { $0.kind == .cpu ? $0.computeUnits : 2 } ?? 1)
        if case .failure(let reason) = result { log("no PyTorch peer: \(reason)") }
        return result.map { .live($0) }
    }

    /// How the peer's figures were taken, for the report and the JSON.
    func peerTimingDescription(_ peer: Result<Peer, PeerUnavailable>) -> String? {
        switch peer {
        case .success(.live): "timed case by case, alternating batches of \(peerBatch) iterations with NormCL's"
        case .success(.recorded): "read from \(peerJSON ?? "a peer JSON"), timed separately"
        case .failure: nil
        }
    }

    /// `--tune`: the tuner on this backend's device; prints (and with `--tune-database`
    /// writes) the device's entry.
    func runTuner(on backend: Backend, iterations: Int, warmup: Int) throws {
        guard let runtime = backend.runtime else {
            throw ValidationError("--tune needs an OpenCL device (the reference backend has nothing to tune)")
        }
        let tuner = Tuner(
            device: runtime.device, iterations: iterations, warmup: warmup,
            measure: { c, b in try self.measure(c, on: b, iterations: iterations, warmup: warmup, peer: nil).host.median },
            log: log)
        let outcome = try tuner.run(from: runtime.tuning, cases: Tuner.cases(quick: quick))
        let entry = tuner.entry(outcome, date: todayUTC())
        print("tuning-database entry for \(runtime.device.name) (\(runtime.device.platformName) \(runtime.device.driverVersion)):")
        print(entry)
        if let tuneDatabase {
            guard let text = PeerResults.readFile(tuneDatabase) else { throw BenchmarkError.cannotRead(tuneDatabase) }
            try Report.write(try tuner.updating(text, with: entry), to: tuneDatabase)
            log("wrote the entry into \(tuneDatabase)")
        }
    }

    func selectBackend() throws -> Backend {
        let backend: Backend
        if let device {
            if device.lowercased() == "reference" { return .reference }
            backend = .openCL(try OpenCLRuntime(device: DeviceDiscovery.select(device, from: DeviceDiscovery.devices())))
        } else {
            backend = try Backend.default
        }
        guard callerBuffers, let runtime = backend.runtime else { return backend }
        return .openCL(try CallerBuffers.adoptedRuntime(on: runtime))
    }

    func describe(_ backend: Backend) -> String {
        switch backend {
        case .openCL(let runtime): runtime.device.description + (runtime.isAdopted ? "; caller buffers (steady-state loop)" : "")
        case .reference: "CPU reference path (no OpenCL)"
        }
    }

    /// Times `benchmarkCase` on `backend` and, with a live `peer`, on the peer too: NormCL's
    /// timed iterations run in batches of `--peer-batch`, each followed by as many of the
    /// peer's, so that load from the rest of the machine falls on both alike.
    func measure(
        _ benchmarkCase: BenchmarkCase, on backend: Backend, iterations: Int, warmup: Int, peer: PeerProcess?
    ) throws -> CaseResult {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<benchmarkCase.count).map { _ in Float.random(in: -2...2, using: &rng) + 0.5 }
        let run = try benchmarkCase.prepare(values, backend)
        let clock = ContinuousClock()

        // First call: includes program builds (or disk-cache loads) and kernel code
        // generation, unless an earlier case of the same specialisation did them.
        let programsBefore = backend.runtime?.programStatistics
        // Timed as the iterations below are, up to the end of the op's last kernel; the
        // read-back for the reference check comes after.
        var start = clock.now
        let first = try run()
        try Self.waitForResult(first)
        let firstCall = (clock.now - start).milliseconds
        let output = try first.output.toArray()
        let launches = first.events.count
        let programs = backend.runtime.map { $0.programStatistics - programsBefore! }
        let warmFirstCall = try backend.runtime.map { try firstCallInFreshRuntime(benchmarkCase, values, device: $0.device) }

        // A copy of the same ideal bytes, run after each iteration of the op: the
        // ceiling at this size (cache-resident or not) under the same machine load.
        let copyProbe = try backend.runtime.map { try CopyProbe(bytes: benchmarkCase.idealBytes, on: $0) }
        // The peer makes its tensors and warms up before NormCL's warm-up, so NormCL's
        // first batch follows its own warm-up as before.
        var peerReady = false
        if let peer, peer.lost == nil {  // a lost peer was reported once, when it was lost
            let notReady = peer.prepare(benchmarkCase, warmup: warmup)
            if let notReady { log("    no peer figure: \(notReady)") }
            peerReady = notReady == nil
        }
        var peerTimes: [Double] = []
        for _ in 0..<warmup {
            _ = try run().events.spanNanoseconds()
            _ = try copyProbe?.run()
        }
        var kernelTimes: [Double] = []
        var hostTimes: [Double] = []
        var enqueueTimes: [Double] = []
        var copyTimes: [Double] = []
        // Each kernel's own device time, by its position in the op's launch sequence.
        var kernelNames: [String] = []
        var perKernelTimes: [[Double]] = []
        for iteration in 0..<iterations {
            start = clock.now
            let result = try run()
            enqueueTimes.append((clock.now - start).milliseconds)
            try Self.waitForResult(result)
            hostTimes.append((clock.now - start).milliseconds)
            let events = result.events
            if !events.isEmpty { kernelTimes.append(Double(try events.spanNanoseconds()) / 1e6) }
            if kernelNames.isEmpty {
                kernelNames = events.map(\.name)
                perKernelTimes = Array(repeating: [], count: events.count)
            }
            for (index, event) in events.enumerated() where index < perKernelTimes.count {
                perKernelTimes[index].append(Double(try event.durationNanoseconds()) / 1e6)
            }
            if let copyProbe { copyTimes.append(Double(try copyProbe.run()) / 1e6) }
            // The end of a batch, or of the case: as many of the peer's iterations.
            let done = iteration + 1
            if peerReady, let peer, done % peerBatch == 0 || done == iterations {
                switch peer.time(iterations: done - peerTimes.count) {
                case .success(let times): peerTimes += times
                case .failure(let reason):
                    log("    no peer figure: \(reason)")
                    peerTimes = []
                    peerReady = false
                }
            }
        }
        // Pairs taken moments apart see the same machine: the median of their ratios
        // is steadier than a ratio of medians when other load comes and goes.
        let copyFractions = zip(copyTimes, kernelTimes).map { copy, kernel in
            copy * Double(benchmarkCase.idealBytes) / Double(copyProbe?.bytes ?? 1) / kernel
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
            firstCallMilliseconds: firstCall, warmFirstCallMilliseconds: warmFirstCall, programs: programs, kernel: kernelTimes.isEmpty ? nil : TimingSummary(kernelTimes),
            host: TimingSummary(hostTimes), enqueue: TimingSummary(enqueueTimes), launches: launches, copy: copyTimes.isEmpty ? nil : TimingSummary(copyTimes),
            copyBytes: copyProbe?.bytes, fractionOfCopy: copyFractions.isEmpty ? nil : TimingSummary(copyFractions).median,
            referenceMilliseconds: referenceTime, maxError: maxError, matchesReference: matches,
            kernelBreakdown: zip(kernelNames, perKernelTimes).map { KernelTiming(name: $0, median: TimingSummary($1).median) },
            peer: peerTimes.isEmpty ? nil : TimingSummary(peerTimes))
    }

    /// The first call of `benchmarkCase` in a new runtime (its own context and empty
    /// in-memory program cache) on the same device: what a fresh process pays once the
    /// disk cache holds the case's programs, minus process start-up and discovery.
    func firstCallInFreshRuntime(_ benchmarkCase: BenchmarkCase, _ values: [Float], device: OpenCLDevice) throws -> Double {
        let runtime = try OpenCLRuntime(device: device)
        let run = try benchmarkCase.prepare(values, .openCL(runtime))
        let clock = ContinuousClock()
        let start = clock.now
        try Self.waitForResult(try run())
        return (clock.now - start).milliseconds
    }

    /// Waits until the op's result is on the device: its last kernel's end, or (an op
    /// that launched nothing) a read-back.
    static func waitForResult(_ result: (output: Tensor, events: [KernelEvent])) throws {
        if let last = result.events.last { try last.wait() } else { _ = try result.output.toArray() }
    }

    /// Points NormCL's disk cache and PoCL's kernel cache at new empty directories.
    func useFreshCacheDirectories() throws {
        for variable in ["NORMCL_CACHE_DIR", "POCL_CACHE_DIR"] {
            var template = Array("/tmp/normcl-bench-\(variable.lowercased())-XXXXXX".utf8CString)
            guard let directory = mkdtemp(&template) else { throw ValidationError("mkdtemp failed (errno \(errno))") }
            setenv(variable, String(cString: directory), 1)
            log("\(variable)=\(String(cString: directory)) (cold cache)")
        }
    }

    func log(_ message: String) {
        var line = message + "\n"
        _ = line.withUTF8 { write(2, $0.baseAddress, $0.count) }
    }
}
