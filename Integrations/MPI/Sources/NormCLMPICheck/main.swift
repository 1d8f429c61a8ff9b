// normcl-mpi-check: synchronized BatchNorm over MPI (issue #19), run under mpirun.
//
//   mpirun -np 2 normcl-mpi-check [--reference]
//   mpirun -np 2 normcl-mpi-check --bench [--iterations 20] [--warmup 3] [--reference]
//
// The check: every rank builds the same whole batch from a fixed seed, takes its own
// (uneven, possibly empty) slice, runs syncBatchNorm forward and backward over
// MPIStatisticsExchange and compares with single-device BatchNorm of the whole batch;
// then the failure checks, and one more good sync. Exits 0 only when every rank passed.
import CMPI
import Glibc
import NormCL
import NormCLMPI

let usage = """
    usage: mpirun -np P normcl-mpi-check [--bench [--iterations N] [--warmup N]] [--reference]
      (default)     the correctness and failure checks of issue #19
      --bench       per-rank (8,64,56,56) f32 NCHW: synchronized vs local forward+backward
      --reference   the CPU reference backend instead of the default (OpenCL) one
    """

/// Writes a line to standard error.
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

/// The command line, taken apart option by option.
struct Arguments {
    var rest = Array(CommandLine.arguments.dropFirst())

    mutating func flag(_ name: String) -> Bool {
        guard let index = rest.firstIndex(of: name) else { return false }
        rest.remove(at: index)
        return true
    }

    mutating func number(_ name: String, default fallback: Int) -> Int {
        guard let index = rest.firstIndex(of: name) else { return fallback }
        guard index + 1 < rest.count, let value = Int(rest[index + 1]), value > 0 else {
            printError("normcl-mpi-check: \(name) needs a positive number\n\(usage)")
            exit(2)
        }
        rest.removeSubrange(index...(index + 1))
        return value
    }
}

var arguments = Arguments()
if arguments.flag("--help") || arguments.flag("-h") {
    print(usage)
    exit(0)
}
let bench = arguments.flag("--bench")
let useReference = arguments.flag("--reference")
let iterations = arguments.number("--iterations", default: 20)
let warmup = arguments.number("--warmup", default: 3)
guard arguments.rest.isEmpty else {
    printError("normcl-mpi-check: unknown arguments \(arguments.rest)\n\(usage)")
    exit(2)
}

let threadLevel: MPIThreadLevel
do {
    threadLevel = try MPIEnvironment.initialize(requiring: .funneled)
} catch {
    printError("normcl-mpi-check: \(error)")
    exit(1)
}
let rank = World.rank
let size = World.size

// Every rank resolves its backend before the first collective: a rank that cannot must
// not leave the others waiting.
var backend = Backend.reference
var setupError: String? = nil
var exchange: MPIStatisticsExchange? = nil
do {
    backend = useReference ? .reference : try Backend.default
} catch {
    setupError = "rank \(rank): no backend: \(error)"
}
if World.all(setupError == nil) {
    do {
        exchange = try MPIStatisticsExchange()
    } catch {
        setupError = "rank \(rank): \(error)"
    }
}
guard World.all(setupError == nil), let exchange else {
    for line in World.gatherLines(setupError ?? "") where !line.isEmpty { print("FAIL  set-up: \(line)") }
    try? MPIEnvironment.finalize()
    exit(1)
}

if rank == 0 {
    print("normcl-mpi-check: \(size) ranks, \(backend.name), \(threadLevel) provided")
}
var passed = true
if bench {
    passed = runBench(backend: backend, over: exchange, iterations: iterations, warmup: warmup)
} else {
    if rank == 0 { print("Synchronized BatchNorm against single-device BatchNorm of the whole batch (max over ranks):") }
    for c in cases {
        passed = checkCase(c, backend: backend, over: exchange) && passed
    }
    if rank == 0 { print("Failure checks (every rank's outcome):") }
    passed = failureChecks(backend: backend, over: exchange) && passed
    passed = outOfStepCheck(backend: backend) && passed
    if rank == 0 { print("After the failure checks, the same exchange is still in step:") }
    passed = checkCase(cases[0], label: cases[0].name + " again", backend: backend, over: exchange) && passed
}

let everyRank = World.all(passed)
if rank == 0 {
    print("normcl-mpi-check: \(everyRank ? "PASSED" : "FAILED") on all \(size) ranks (\(bench ? "bench" : "check"), \(backend.name))")
}
do {
    try MPIEnvironment.finalize()
} catch {
    printError("normcl-mpi-check: rank \(rank): \(error)")
}
exit(everyRank ? 0 : 1)
