import Synchronization
import Testing
@testable import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// Exiting with OpenCL work in flight (``ProcessExit``): child processes run the
/// `NormCLExitProbe` executable (a target of this package, built with the tests), which
/// queues an op and calls `exit(0)` at once; every run must exit with status 0.
///
/// What makes a run able to crash: a work-group-function compile still running in
/// PoCL's worker thread at exit. Each run gets its own PoCL cache holding only the
/// program binaries of a first, template run (`program.bc`: the program build is a
/// cache hit, ~30 ms instead of ~1 s), never the compiled work-group functions, so each
/// run compiles one at its first launch. The probe's `--slow-exit-ms` keeps the process
/// alive after LLVM's exit-time destructors, so a compile that overlaps them meets
/// destroyed state every time, not by chance. With a probe built without the fix
/// (`ProcessExit`), 49 of 50 such runs crashed (SIGSEGV in libLLVM, or SIGABRT after
/// `Failed to create kernel compiler pass inline-kernels`), so the first test's 12 runs
/// would all pass without the fix with a chance of about 1 in 10^20; each run costs
/// about 2 s of compiling, which the whole suite waits for. The
/// build-on-a-thread runs crash less often without it (1 of 6); they mainly check that
/// exit neither hangs nor crashes while another thread is inside NormCL.
@Suite("Process exit", .enabled(if: hasOpenCL), .serialized)
struct ProcessExitTests {
    @Test("a child that queues an op and exits at once exits 0, 12 of 12 runs")
    func exitRightAfterAnOp() throws {
        let probe = try ExitProbe()
        defer { probe.removeFiles() }
        let runs = probe.run(count: 12, arguments: ["--slow-exit-ms", "100"])
        let failures = runs.filter { !$0.exitedCleanly }
        #expect(runs.count == 12)
        #expect(failures.count == 0, "\(runs.count - failures.count) of \(runs.count) runs exited 0; failures:\n\(failures.map(\.report).joined(separator: "\n"))")
    }

    /// Exit waits for the build running on another thread (through ``SubmissionGate``)
    /// and parks that thread at its next launch instead of hanging or crashing the exit.
    @Test("a child that exits while another thread builds a program exits 0")
    func exitDuringABuildOnAnotherThread() throws {
        let probe = try ExitProbe()
        defer { probe.removeFiles() }
        let runs = probe.run(count: 4, arguments: ["--slow-exit-ms", "100", "--build-on-thread"])
        let failures = runs.filter { !$0.exitedCleanly }
        #expect(failures.count == 0, "failures:\n\(failures.map(\.report).joined(separator: "\n"))")
    }

    /// A runtime is registered for the exit handler from its creation until `deinit`
    /// removes it (before releasing the queue).
    @Test("runtimes are tracked for exit until removed")
    func runtimesTracked() throws {
        let runtime = try OpenCLRuntime(device: try #require(sharedRuntime).device)
        #expect(ProcessExit.isTracked(runtime))
        ProcessExit.untrack(runtime)
        #expect(!ProcessExit.isTracked(runtime))
    }

    /// A private gate (closing the process's own one would stop every other test).
    @Test("the gate's close waits for a pass in progress; the closing thread still passes")
    func gateWaitsForPasses() async throws {
        let gate = SubmissionGate()
        let flags = GateTestFlags()
        // Both bodies block their threads: threads of their own, not the two of the pool.
        let executor = ThreadPerJobExecutor()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: executor) {
                gate.pass {
                    flags.inside.store(true, ordering: .releasing)
                    while !flags.release.load(ordering: .acquiring) { usleep(1000) }
                }
            }
            while !flags.inside.load(ordering: .acquiring) { await Task.yield() }
            group.addTask(executorPreference: executor) {
                gate.close()
                flags.closed.store(true, ordering: .releasing)
                // The closing thread itself is let through (a later exit handler's work).
                #expect(gate.pass { 42 } == 42)
            }
            try await Task.sleep(for: .milliseconds(50))
            let closedEarly = flags.closed.load(ordering: .acquiring)
            #expect(!closedEarly, "close returned while a pass was in progress")
            flags.release.store(true, ordering: .releasing)
            try await group.waitForAll()
        }
        let closedAtEnd = flags.closed.load(ordering: .acquiring)
        #expect(closedAtEnd)
        #expect(gate.isClosed)
    }
}

/// What the gate test's threads tell each other.
private final class GateTestFlags: Sendable {
    let inside = Atomic<Bool>(false)
    let release = Atomic<Bool>(false)
    let closed = Atomic<Bool>(false)
}

/// Runs `NormCLExitProbe` in child processes, each with a PoCL cache of its own.
private struct ExitProbe {
    /// The probe's executable, next to the test bundle in the build directory.
    let path: String
    /// A temporary folder for the caches and the children's output.
    let root: String

    /// The outcome of one child.
    struct Run {
        let index: Int
        /// The `waitpid` status, or nil when the run was killed for taking too long.
        let status: Int32?
        let output: String

        var exitedCleanly: Bool { status == 0 }

        var report: String {
            let what =
                if let status {
                    status & 0x7f == 0 ? "exit status \((status >> 8) & 0xff)" : "signal \(status & 0x7f)"
                } else {
                    "timed out (killed)"
                }
            return "run \(index): \(what); output: \(output.suffix(1500))"
        }
    }

    /// Finds the probe and makes the template cache (one run of the plain probe).
    init() throws {
        let executable = try #require(Self.ownExecutable(), "cannot read /proc/self/exe")
        let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        path = directory + "/NormCLExitProbe"
        try #require(access(path, X_OK) == 0, "\(path) is missing: build it with `swift build --product NormCLExitProbe`")
        var template = Array("/tmp/normcl-exit-XXXXXX".utf8CString)
        root = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        let first = runAll([(index: 0, cache: root + "/template", arguments: [])]).first
        try #require(first?.exitedCleanly == true, "the template run failed: \(first?.report ?? "")")
    }

    /// Runs the probe `count` times with `arguments`, up to three at a time.
    func run(count: Int, arguments: [String]) -> [Run] {
        let jobs = (1...count).map { index in
            let cache = root + "/run-\(index)-\(arguments.count)"
            seedCache(cache)
            return (index: index, cache: cache, arguments: arguments)
        }
        return runAll(jobs)
    }

    /// A fresh cache holding the template's program binaries (hard links) and nothing
    /// else: the program build hits the cache, the work-group functions are compiled.
    /// With another PoCL cache layout nothing is linked and the runs compile everything.
    private func seedCache(_ cache: String) {
        mkdir(cache, 0o700)
        mkdir(cache + "/LA", 0o700)
        guard let directory = opendir(root + "/template/LA") else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard !name.hasPrefix(".") else { continue }
            mkdir(cache + "/LA/" + name, 0o700)
            link(root + "/template/LA/" + name + "/program.bc", cache + "/LA/" + name + "/program.bc")
        }
    }

    private func runAll(_ jobs: [(index: Int, cache: String, arguments: [String])]) -> [Run] {
        let parallel = 3
        let timeoutMicroseconds = 120_000_000
        var pending = jobs[...]
        var running: [(pid: pid_t, index: Int, log: String, started: Int)] = []
        var runs: [Run] = []
        var clock = 0
        while !pending.isEmpty || !running.isEmpty {
            while running.count < parallel, let job = pending.popFirst() {
                let log = job.cache + ".log"
                if let pid = spawn(arguments: job.arguments, cache: job.cache, log: log) {
                    running.append((pid, job.index, log, clock))
                } else {
                    runs.append(Run(index: job.index, status: -1, output: "posix_spawn failed: \(errno)"))
                }
            }
            for (position, child) in running.enumerated().reversed() {
                var status: Int32 = 0
                let result = waitpid(child.pid, &status, WNOHANG)
                if result == child.pid {
                    runs.append(Run(index: child.index, status: status, output: readText(child.log)))
                    running.remove(at: position)
                } else if clock - child.started > timeoutMicroseconds {
                    kill(child.pid, SIGKILL)
                    waitpid(child.pid, &status, 0)
                    runs.append(Run(index: child.index, status: nil, output: readText(child.log)))
                    running.remove(at: position)
                }
            }
            usleep(5000)
            clock += 5000
        }
        return runs.sorted { $0.index < $1.index }
    }

    /// Starts the probe with the test's environment, its own PoCL cache, and Swift's
    /// backtracer off (it would let a crashing child finish its `exit(0)` meanwhile).
    private func spawn(arguments: [String], cache: String, log: String) -> pid_t? {
        var inherited: [String] = []
        var entry: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let variable = entry?.pointee {
            let text = String(cString: variable)
            if !["POCL_CACHE_DIR=", "POCL_KERNEL_CACHE=", "POCL_DEBUG=", "SWIFT_BACKTRACE="].contains(where: text.hasPrefix) {
                inherited.append(text)
            }
            entry = entry?.advanced(by: 1)
        }
        return spawnProcess(
            path, arguments, log: log, environment: inherited + ["POCL_CACHE_DIR=\(cache)", "SWIFT_BACKTRACE=enable=no"])
    }

    /// Deletes the caches and logs.
    func removeFiles() {
        removeTree(root)
    }

    private static func ownExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
