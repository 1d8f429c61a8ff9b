import Testing
@testable import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// The entry format of the disk program cache and the configuration's environment
/// variables: plain values, no device needed.
@Suite("Program cache format and configuration")
struct ProgramCacheFormatTests {
    @Test("an entry decodes to its key and payload")
    func roundTrip() throws {
        let payload: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bytes = ProgramBinaryEntry.encode(key: "key é", payload: payload)
        #expect(bytes.count == ProgramBinaryEntry.overhead + "key é".utf8.count + payload.count)
        let entry = try ProgramBinaryEntry.decode(bytes).get()
        #expect(entry.key == Array("key é".utf8))
        #expect(entry.payload == payload)
        // An empty key and payload are well-formed too (the store rejects an empty binary).
        #expect(try ProgramBinaryEntry.decode(ProgramBinaryEntry.encode(key: "", payload: [])).get().payload == [])
    }

    @Test("every truncation and every flipped byte is detected")
    func damageIsDetected() {
        let bytes = ProgramBinaryEntry.encode(key: "device: x\noptions: -D A=1", payload: Array(repeating: 7, count: 64))
        for length in 0..<bytes.count {
            #expect(throws: ProgramBinaryEntry.Failure.self) { try ProgramBinaryEntry.decode(Array(bytes.prefix(length))).get() }
        }
        for index in bytes.indices {
            var damaged = bytes
            damaged[index] ^= 0x10
            #expect(throws: ProgramBinaryEntry.Failure.self, "byte \(index)") { try ProgramBinaryEntry.decode(damaged).get() }
        }
        var version = bytes
        version[8] = 2
        #expect(ProgramBinaryEntry.decode(version).failure == .unsupportedVersion(2))
        var payload = bytes
        payload[bytes.count - 20] ^= 1
        #expect(ProgramBinaryEntry.decode(payload).failure == .checksumMismatch)
    }

    @Test("FNV-1a 64 matches the published test vectors")
    func fnv() {
        #expect(FNV1a64.hash([]) == 0xcbf2_9ce4_8422_2325)
        #expect(FNV1a64.hash("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(FNV1a64.hash("foobar".utf8) == 0x8594_4171_f739_67e8)
        #expect(FNV1a64.hex(0xab) == "00000000000000ab")
    }

    @Test("the environment variables: limit, directory, off, XDG and HOME fallbacks")
    func environmentVariables() {
        func resolve(_ variables: [String: String]) -> (ProgramCacheConfiguration, rejected: String?) {
            ProgramCacheConfiguration.resolve { variables[$0] }
        }
        #expect(resolve([:]).0 == ProgramCacheConfiguration(memoryLimit: 64, directory: nil))
        #expect(resolve(["HOME": "/home/u"]).0.directory == "/home/u/.cache/normcl")
        #expect(resolve(["HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"]).0.directory == "/xdg/normcl")
        // A relative XDG_CACHE_HOME is ignored, as the XDG specification says.
        #expect(resolve(["HOME": "/home/u", "XDG_CACHE_HOME": "rel"]).0.directory == "/home/u/.cache/normcl")
        #expect(resolve(["HOME": "/home/u", "XDG_CACHE_HOME": "/xdg", "NORMCL_CACHE_DIR": "/c"]).0.directory == "/c")
        #expect(resolve(["HOME": "/home/u", "NORMCL_CACHE_DIR": "off"]).0.directory == nil)
        #expect(resolve(["HOME": "/home/u", "NORMCL_CACHE_DIR": "OFF"]).0.directory == nil)
        #expect(resolve(["HOME": "/home/u", "NORMCL_CACHE_DIR": ""]).0.directory == "/home/u/.cache/normcl")
        #expect(resolve(["NORMCL_PROGRAM_CACHE_LIMIT": "5"]).0.memoryLimit == 5)
        #expect(resolve(["NORMCL_PROGRAM_CACHE_LIMIT": " 12 "]).0.memoryLimit == 12)
        for bad in ["0", "-3", "many"] {
            let (configuration, rejected) = resolve(["NORMCL_PROGRAM_CACHE_LIMIT": bad])
            #expect(configuration.memoryLimit == 64)
            #expect(rejected == bad)
        }
        var configuration = ProgramCacheConfiguration(memoryLimit: 0, directory: nil)
        #expect(configuration.memoryLimit == 1)
        configuration.memoryLimit = -5
        #expect(configuration.memoryLimit == 1)
    }
}

/// The program cache of a runtime: least-recently-used eviction in memory, program
/// binaries on disk, and what happens to each kind of bad entry. Every test gives its
/// runtimes a temporary directory of its own through the API (never `NORMCL_CACHE_DIR`:
/// other suites run in parallel in this process).
///
/// Programs: `Kernels/layer_norm.cl` (through LayerNorm, checked against the reference),
/// the copy probe's `memory.cl`, and tiny test kernels.
@Suite("Program cache", .enabled(if: hasOpenCL), .serialized)
struct ProgramCacheTests {
    /// A LayerNorm forward: its programs, and its output checked against the reference.
    static let harness = RowNormHarness(.layerNorm, shape: [6, 40], normalizedShape: [40], seed: 15)

    static func probeSource(_ name: String = "cache_probe") -> KernelSource {
        KernelSource(
            name: name,
            text: "__kernel void probe(__global float *y) { y[get_global_id(0)] = VALUE * (float)get_global_id(0); }")
    }

    /// Runs `probe` of `program` and checks it wrote `value · i`.
    static func runProbe(_ program: CompiledProgram, value: Float, on runtime: OpenCLRuntime) throws {
        let buffer = try DeviceBuffer(byteCount: 16 * 4, on: runtime)
        try runtime.enqueue("probe", from: program, global: [16], local: [16], arguments: [.buffer(buffer)])
        #expect(try buffer.download(as: Float.self) == (0..<16).map { value * Float($0) })
    }

    static func runtime(directory: String?, limit: Int = 64) throws -> OpenCLRuntime {
        try OpenCLRuntime(
            device: try #require(sharedRuntime).device,
            programCache: ProgramCacheConfiguration(memoryLimit: limit, directory: directory))
    }

    // MARK: Memory

    @Test("beyond the limit the least recently used program is dropped")
    func leastRecentlyUsedEviction() throws {
        let runtime = try Self.runtime(directory: nil, limit: 2)
        let source = Self.probeSource()
        let cache = runtime.programs
        let a = try runtime.program(source, options: "-D VALUE=1.0f")
        _ = try runtime.program(source, options: "-D VALUE=2.0f")
        #expect(cache.residentCount == 2 && cache.sourceBuildCount == 2)
        // Touch A: B becomes the least recently used one.
        #expect(try runtime.program(source, options: "-D VALUE=1.0f") === a)
        _ = try runtime.program(source, options: "-D VALUE=3.0f")
        #expect(cache.residentCount == 2)
        #expect(cache.evictionCount == 1)
        #expect(cache.isResident(source, options: "-D VALUE=1.0f"))
        #expect(!cache.isResident(source, options: "-D VALUE=2.0f"))
        #expect(cache.isResident(source, options: "-D VALUE=3.0f"))
        // A is still cached (no build, and now the most recent); B is built again and
        // evicts C, the least recently used.
        #expect(try runtime.program(source, options: "-D VALUE=1.0f") === a)
        #expect(cache.sourceBuildCount == 3)
        let b = try runtime.program(source, options: "-D VALUE=2.0f")
        #expect(cache.sourceBuildCount == 4)
        #expect(cache.count == 4)
        #expect(cache.isResident(source, options: "-D VALUE=1.0f"))
        #expect(!cache.isResident(source, options: "-D VALUE=3.0f"))
        try Self.runProbe(b, value: 2, on: runtime)
        try Self.runProbe(a, value: 1, on: runtime)
    }

    @Test("a dropped program still works for whoever holds it; the limit counts per runtime")
    func evictionWhileInUse() throws {
        let runtime = try Self.runtime(directory: nil, limit: 1)
        let source = Self.probeSource()
        let held = try runtime.program(source, options: "-D VALUE=4.0f")
        try Self.runProbe(held, value: 4, on: runtime)
        let other = try runtime.program(source, options: "-D VALUE=5.0f")
        #expect(!runtime.programs.isResident(source, options: "-D VALUE=4.0f"))
        #expect(runtime.programs.residentCount == 1)
        // The held program is alive: its pooled kernel and a new launch both work.
        try Self.runProbe(held, value: 4, on: runtime)
        try Self.runProbe(other, value: 5, on: runtime)
        // And an op still runs correctly on a runtime that keeps one program.
        try Self.harness.check(on: .openCL(runtime))
    }

    @Test("concurrent first requests for one key build it once")
    func concurrentFirstRequests() async throws {
        let directory = try TemporaryDirectory()
        let runtime = try Self.runtime(directory: directory.path + "/cache")
        let source = Self.probeSource("cache_probe_concurrent")
        let programs = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
            for _ in 0..<6 { group.addTask { ObjectIdentifier(try runtime.program(source, options: "-D VALUE=6.0f")) } }
            return try await group.reduce(into: Set<ObjectIdentifier>()) { $0.insert($1) }
        }
        #expect(programs.count == 1)
        #expect(runtime.programs.count == 1)
        #expect(directory.entries(in: "cache").count == 1)
    }

    // MARK: Disk

    @Test("a cold build writes entries; a fresh runtime loads them without compiling")
    func coldThenWarm() throws {
        let directory = try TemporaryDirectory()
        // Not created yet: the first store creates it with its parents.
        let cacheDirectory = directory.path + "/a/b/normcl"
        let cold = try Self.runtime(directory: cacheDirectory)
        try Self.harness.check(on: .openCL(cold))
        let built = cold.programs.sourceBuildCount
        #expect(built >= 1)
        #expect(cold.programs.binaryLoadCount == 0)
        let entries = directory.entries(in: "a/b/normcl")
        #expect(entries.count == built)
        #expect(directory.files(in: "a/b/normcl").allSatisfy { $0.hasSuffix(".bin") }, "temporary files left behind")

        let warm = try Self.runtime(directory: cacheDirectory)
        try Self.harness.check(on: .openCL(warm))
        #expect(warm.programs.sourceBuildCount == 0)
        #expect(warm.programs.binaryLoadCount == built)
        // The entry holds the full key: this device, driver, NormCL version and options.
        let entry = try ProgramBinaryEntry.decode(directory.read("a/b/normcl/" + entries[0])).get()
        let key = String(decoding: entry.key, as: UTF8.self)
        #expect(key.contains("normcl: \(NormCL.version)"))
        #expect(key.contains("device: \(warm.device.name)"))
        #expect(key.contains("driver: \(warm.device.driverVersion)"))
        #expect(key.contains(KernelSource.common.text))
    }

    /// The ways an entry can be bad. Each: the op still gives the reference's result,
    /// built from source; the entry is replaced, so the next runtime loads it.
    enum Damage: String, CaseIterable, CustomTestStringConvertible {
        case truncated, emptyFile, payloadByteFlipped, headerByteFlipped, keyByteFlipped
        case foreignEntry, binaryRejectedByDriver, directoryInPlace

        var testDescription: String { rawValue }
    }

    @Test("a bad entry is rebuilt from source and replaced", arguments: Damage.allCases)
    func damagedEntry(_ damage: Damage) throws {
        let directory = try TemporaryDirectory()
        let cacheDirectory = directory.path + "/cache"
        let first = try Self.runtime(directory: cacheDirectory)
        try Self.harness.check(on: .openCL(first))
        // Another program's entry, for the foreign case (valid, but written for another key).
        _ = try first.program(Self.probeSource("cache_probe_foreign"), options: "-D VALUE=7.0f")
        let foreignPath = try #require(
            first.programs.entryPath(source: Self.probeSource("cache_probe_foreign"), options: "-D VALUE=7.0f", device: first.device))
        let foreign = try directory.read(String(foreignPath.dropFirst(directory.path.count + 1)))
        let names = directory.entries(in: "cache").filter { "cache/" + $0 != String(foreignPath.dropFirst(directory.path.count + 1)) }
        #expect(names.count == first.programs.sourceBuildCount - 1)
        for name in names {
            let relative = "cache/" + name
            let bytes = try directory.read(relative)
            let damaged: [UInt8]
            switch damage {
            case .truncated: damaged = Array(bytes.prefix(bytes.count / 2))
            case .emptyFile: damaged = []
            case .payloadByteFlipped:
                damaged = bytes.enumerated().map { $0.offset == bytes.count - 100 ? ~$0.element : $0.element }
            case .headerByteFlipped: damaged = bytes.enumerated().map { $0.offset == 14 ? $0.element ^ 0x01 : $0.element }
            case .keyByteFlipped: damaged = bytes.enumerated().map { $0.offset == 40 ? $0.element ^ 0x20 : $0.element }
            case .foreignEntry: damaged = foreign
            case .binaryRejectedByDriver:
                // A valid entry for the right key whose payload no driver takes.
                let key = try ProgramBinaryEntry.decode(bytes).get().key
                damaged = ProgramBinaryEntry.encode(
                    key: String(decoding: key, as: UTF8.self), payload: Array("not a program binary".utf8))
            case .directoryInPlace: damaged = []
            }
            unlink(directory.path + "/" + relative)
            if damage == .directoryInPlace {
                // A directory under the entry's name: not readable as a file, and the
                // rename over it fails; the op must not care.
                mkdir(directory.path + "/" + relative, 0o755)
            } else {
                try directory.write(relative, damaged)
            }
        }

        let second = try Self.runtime(directory: cacheDirectory)
        try Self.harness.check(on: .openCL(second))
        #expect(second.programs.binaryLoadCount == 0, "a bad entry was loaded")
        #expect(second.programs.sourceBuildCount == names.count)

        let third = try Self.runtime(directory: cacheDirectory)
        try Self.harness.check(on: .openCL(third))
        if damage == .directoryInPlace {
            #expect(third.programs.sourceBuildCount == names.count)
        } else {
            #expect(third.programs.sourceBuildCount == 0, "the entry was not replaced")
            #expect(third.programs.binaryLoadCount == names.count)
        }
    }

    /// Tests run as root, so a directory's mode does not stop writes; a path through a
    /// regular file does (`ENOTDIR`), as does a regular file where the directory should be.
    @Test("an unwritable cache directory leaves ops working", arguments: ["through-a-file/cache", "a-file"])
    func unwritableDirectory(_ path: String) throws {
        let directory = try TemporaryDirectory()
        let file = path.split(separator: "/").first.map(String.init)!
        try directory.write(file, Array("a regular file".utf8))
        for _ in 0..<2 {
            let runtime = try Self.runtime(directory: directory.path + "/" + path)
            try Self.harness.check(on: .openCL(runtime))
            #expect(runtime.programs.sourceBuildCount >= 1)
            #expect(runtime.programs.binaryLoadCount == 0)
        }
        #expect(try directory.read(file) == Array("a regular file".utf8))
    }

    @Test("two processes filling an empty cache at once both succeed, and leave one valid entry")
    func twoProcessesRace() throws {
        let directory = try TemporaryDirectory()
        let cacheDirectory = directory.path + "/cache"
        let probe = try #require(Self.probeExecutable(), "NormCLExitProbe is missing: swift build --product NormCLExitProbe")
        for round in 0..<2 {
            let pids = try (0..<2).map { index in
                try #require(Self.spawn(probe, ["--program-cache", cacheDirectory], log: directory.path + "/probe-\(round)-\(index).log"))
            }
            for (index, pid) in pids.enumerated() {
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                let log = (try? directory.read("probe-\(round)-\(index).log")).map { String(decoding: $0, as: UTF8.self) } ?? ""
                #expect(status == 0, "probe \(index) of round \(round): status \(status), output: \(log)")
            }
        }
        let entries = directory.entries(in: "cache")
        #expect(entries.count == 1, "\(directory.files(in: "cache"))")
        #expect(directory.files(in: "cache").count == entries.count, "temporary files left behind")
        let runtime = try Self.runtime(directory: cacheDirectory)
        let copy = try CopyProbe(bytes: 1 << 12, on: runtime)
        _ = try copy.run()
        #expect(runtime.programs.binaryLoadCount == 1)
        #expect(runtime.programs.sourceBuildCount == 0)
        #expect(try copy.destination.download(as: Float.self).allSatisfy { $0 == 1 })
    }

    /// Prints the time of a source build and of a load of its binary, for one LayerNorm
    /// program (run alone for numbers: `swift test --filter ProgramCacheTests/timing`;
    /// `POCL_KERNEL_CACHE=0` for PoCL's cold compile, else PoCL's own cache answers).
    @Test("timing: source build vs binary load")
    func timing() throws {
        let directory = try TemporaryDirectory()
        let runtime = try Self.runtime(directory: directory.path)
        try Self.harness.check(on: .openCL(runtime))
        let entry = try ProgramBinaryEntry.decode(directory.read(try #require(directory.entries(in: ".").first))).get()
        let key = String(decoding: entry.key, as: UTF8.self)
        let optionsLine = try #require(key.split(separator: "\n").first { $0.hasPrefix("options: ") })
        // The options as the op gave them: the cache adds its own (compilerOptions) again.
        let suffix = ProgramCache.compilerOptions("")
        let compiled = String(optionsLine.dropFirst("options: ".count))
        let options = compiled.hasSuffix(suffix) ? String(compiled.dropLast(suffix.count)) : compiled
        let text = CompiledProgram.sourceText(of: .layerNorm)
        var sourceTimes: [Double] = []
        var loadTimes: [Double] = []
        for _ in 0..<3 {
            // A fresh option per run, so no cache (PoCL's included) has the source build.
            let unique = options + " -D NORMCL_TIMING_RUN=\(UInt64.random(in: 0..<UInt64.max))"
            var start = Self.now()
            let built = try CompiledProgram.build(
                source: .layerNorm, text: text, options: unique, context: runtime.context, device: runtime.device,
                objects: runtime.objects)
            sourceTimes.append(Self.now() - start)
            let binary = try #require(built.binary(device: runtime.device))
            start = Self.now()
            let loaded = try #require(CompiledProgram.load(
                binary: binary, sourceName: "layer_norm", options: unique, context: runtime.context,
                device: runtime.device, objects: runtime.objects))
            loadTimes.append(Self.now() - start)
            _ = loaded
        }
        // The disk round trip as the cache does it: read, decode, create, build.
        let start = Self.now()
        let warm = try Self.runtime(directory: directory.path)
        _ = try warm.program(.layerNorm, options: options)
        let cacheLoad = Self.now() - start
        #expect(warm.programs.binaryLoadCount == 1)
        func ms(_ values: [Double]) -> String { values.map { String(Int(($0 * 1000).rounded())) + " ms" }.joined(separator: ", ") }
        print("ProgramCacheTests timing: layer_norm source builds \(ms(sourceTimes)); binary loads \(ms(loadTimes)); runtime + load from disk \(ms([cacheLoad])); binary \(entry.payload.count) bytes")
    }

    // MARK: Helpers

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// `NormCLExitProbe`, next to the test bundle in the build directory.
    static func probeExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        let executable = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let path = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/NormCLExitProbe"
        return access(path, X_OK) == 0 ? path : nil
    }

    /// Starts `path` with `arguments` and this process's environment, output to `log`.
    static func spawn(_ path: String, _ arguments: [String], log: String) -> pid_t? {
        spawnProcess(path, arguments, log: log)
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let failure) = self { failure } else { nil }
    }
}

/// A temporary directory, removed with everything in it when the value goes away.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/normcl-program-cache-XXXXXX".utf8CString)
        path = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
    }

    deinit { removeTree(path) }

    /// The names in `relative` (a folder under this one), sorted.
    func files(in relative: String) -> [String] {
        guard let directory = opendir(path + "/" + relative) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The program cache entries (`*.bin`) in `relative`.
    func entries(in relative: String) -> [String] {
        files(in: relative).filter { $0.hasSuffix(".bin") && !$0.hasPrefix(".") }
    }

    func read(_ relative: String) throws -> [UInt8] {
        try ProgramBinaryStore.readFile(path + "/" + relative).get()
    }

    /// Replaces the file at `relative` with `bytes`.
    func write(_ relative: String, _ bytes: [UInt8]) throws {
        unlink(path + "/" + relative)
        try ProgramBinaryStore.writeFile(path + "/" + relative, bytes)
    }
}
