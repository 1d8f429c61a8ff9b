// A program that queues NormCL work and exits at once: `ProcessExitTests` runs it many
// times in child processes and expects every run to exit with status 0.
//
//     NormCLExitProbe [--slow-exit-ms N] [--build-on-thread]
//
// Default: BatchNorm's training forward on a (2, 4, 3, 3) tensor, then `exit(0)` with
// the kernels queued and never waited for (a user's script that computes and exits).
//
// --slow-exit-ms N: first registers an exit handler that sleeps N ms. Exit handlers run
//   in reverse order of registration, so it runs after every handler and destructor
//   registered later — those of LLVM and Clang, which PoCL loads, included — and keeps
//   the process alive for N ms with that compiler state destroyed. A compile still
//   running at exit then meets it: what happens by chance on a busy machine (a crash in
//   2–3 of 4 runs for the reporter, 2 in about 120 runs here), every time.
// --build-on-thread: also runs a LayerNorm on a second thread, whose program is not
//   built yet in this process, and exits while that thread is compiling it.
//
// --program-cache DIR: instead of all of the above, builds one program (the copy probe's,
//   `Kernels/memory.cl`) on a runtime whose disk program cache is DIR, runs it once and
//   exits; `ProgramCacheTests` starts two at once on an empty DIR, so both write the
//   same entry at the same time.
//
// Exit status: 0 when the process exits normally; 2 when NormCL throws (message on
// standard error); a crash is a signal.
import NormCL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// State shared with the build thread (statics: nonisolated and initialised once).
enum Probe {
    static let buildStarted = Atomic<Bool>(false)

    static func fail(_ message: String) -> Never {
        let text = "NormCLExitProbe: \(message)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }

    /// Starts a thread running ``layerNormOnThisThread()`` (defined here, outside the
    /// main actor's top-level code, so the thread's closure is not main-actor isolated).
    static func startBuildThread() {
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { _ in
            Probe.layerNormOnThisThread()
            return nil
        }, nil)
        guard status == 0 else { fail("pthread_create failed: \(status)") }
    }

    /// LayerNorm, whose program this process has not built (its own shape too).
    static func layerNormOnThisThread() {
        do {
            let backend = try Backend.default
            let x = try Tensor((0..<60).map { Float($0 % 7) }, shape: [5, 12], on: backend)
            buildStarted.store(true, ordering: .releasing)
            _ = try layerNorm(x, normalizedShape: [12])
        } catch {
            fail("\(error)")
        }
    }
}

var arguments = CommandLine.arguments.dropFirst()
var slowExitMilliseconds: Int32 = 0
var buildOnThread = false
var programCacheDirectory: String?
while let argument = arguments.popFirst() {
    switch argument {
    case "--slow-exit-ms":
        guard let value = arguments.popFirst().flatMap({ Int32($0) }), value > 0 else { Probe.fail("--slow-exit-ms needs N > 0") }
        slowExitMilliseconds = value
    case "--build-on-thread":
        buildOnThread = true
    case "--program-cache":
        guard let directory = arguments.popFirst() else { Probe.fail("--program-cache needs a directory") }
        programCacheDirectory = directory
    default:
        Probe.fail("unknown argument \(argument)")
    }
}

if let programCacheDirectory {
    do {
        let runtime = try OpenCLRuntime(
            device: try DeviceDiscovery.defaultDevice(),
            programCache: ProgramCacheConfiguration(directory: programCacheDirectory))
        _ = try CopyProbe(bytes: 1 << 12, on: runtime).run()
        exit(0)
    } catch {
        Probe.fail("\(error)")
    }
}

if slowExitMilliseconds > 0 {
    setenv("NORMCL_EXIT_PROBE_SLEEP_MS", String(slowExitMilliseconds), 1)
    _ = atexit { usleep(UInt32(atoi(getenv("NORMCL_EXIT_PROBE_SLEEP_MS"))) * 1000) }
}

do {
    let backend = try Backend.default
    let x = try Tensor((0..<72).map { Float($0) }, shape: [2, 4, 3, 3], on: backend)
    let output = try batchNorm(x)  // kernels queued, not waited for
    if buildOnThread {
        Probe.startBuildThread()
        while !Probe.buildStarted.load(ordering: .acquiring) { usleep(100) }
        usleep(20_000)  // into the build (a cold one takes 0.1–1 s)
    }
    withExtendedLifetime(output) { exit(0) }
} catch {
    Probe.fail("\(error)")
}
