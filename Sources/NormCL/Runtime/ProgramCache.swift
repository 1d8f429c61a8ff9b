import COpenCL

/// Compiled programs of one context, keyed by (kernel file name, build options): the
/// most recently used ones in memory, and their binaries on disk when configured (see
/// ``ProgramCacheConfiguration``).
///
/// Each distinct key is built once while it stays in memory; concurrent first requests
/// for the same key wait for the one build instead of compiling twice. Beyond the memory
/// limit the least recently used program is dropped: only the cache's reference, so a
/// launch or a `CopyProbe` still holding it keeps it alive, and a later request builds (or
/// loads) it again. A failed build is not cached, so a later call reports the same
/// ``KernelBuildError`` again.
///
/// With a disk store, a program not in memory is first looked up there
/// (`clCreateProgramWithBinary` and `clBuildProgram` on a valid entry for exactly this
/// source text, options, device and driver); on a miss, or when the driver rejects the
/// binary, it is built from source and its binary stored for the next process. Disk
/// failures never fail the request.
final class ProgramCache: Sendable {
    /// Names, not texts: each kernel file has a unique name, and hashing a name is
    /// cheap on every launch; the options as a ``KernelSpecialization``, whose command line
    /// is formed only for a build. (The disk key holds the full texts: see `ProgramBinaryKey`.)
    private struct Key: Hashable {
        let sourceName: String
        let options: KernelSpecialization
    }

    private struct Resident {
        let program: CompiledProgram
        /// The ``State/clock`` value of the last request: the smallest is evicted first.
        var lastUse: UInt64
    }

    private struct State {
        var resident: [Key: Resident] = [:]
        /// Counts requests, to order residents by recency of use.
        var clock: UInt64 = 0
        var sourceBuilds = 0
        var binaryLoads = 0
        var evictions = 0
    }

    private let state = PosixMutex<State>(State())
    private let objects: OpenCLObjectCounts
    /// The memory limit and the disk directory.
    let configuration: ProgramCacheConfiguration
    private let store: ProgramBinaryStore?

    init(objects: OpenCLObjectCounts, configuration: ProgramCacheConfiguration) {
        self.objects = objects
        self.configuration = configuration
        store = configuration.directory.map { ProgramBinaryStore(directory: $0) }
    }

    /// The number of programs built or loaded so far, whether still in memory or not
    /// (for tests of the cache): source builds plus binary loads.
    var count: Int { state.withLock { $0.sourceBuilds + $0.binaryLoads } }
    /// Programs compiled from source so far.
    var sourceBuildCount: Int { state.withLock { $0.sourceBuilds } }
    /// Programs loaded from the disk cache's binaries so far.
    var binaryLoadCount: Int { state.withLock { $0.binaryLoads } }
    /// Programs dropped from memory for the limit so far.
    var evictionCount: Int { state.withLock { $0.evictions } }
    /// The number of programs in memory now (at most the limit).
    var residentCount: Int { state.withLock { $0.resident.count } }

    /// Whether the program for (`source`, `options`) is in memory, without touching its
    /// recency (for tests of the eviction order).
    func isResident(_ source: KernelSource, options: String) -> Bool {
        state.withLock { $0.resident[Key(sourceName: source.name, options: KernelSpecialization(text: options))] != nil }
    }

    /// The disk store's entry path for the program (nil without a disk cache), for tests.
    func entryPath(source: KernelSource, options: String, device: OpenCLDevice) -> String? {
        store?.path(forKey: ProgramBinaryKey.text(
            sourceName: source.name, sourceText: CompiledProgram.sourceText(of: source),
            options: Self.compilerOptions(options), device: device))
    }

    /// What every program is compiled with beside its own options: its kernels'
    /// parameter lists kept for ``KernelSignature``'s check of every call site.
    static func compilerOptions(_ options: String) -> String {
        options + " -cl-kernel-arg-info"
    }

    func program(
        source: KernelSource, specialization: KernelSpecialization, context: cl_context, device: OpenCLDevice
    ) throws -> CompiledProgram {
        let key = Key(sourceName: source.name, options: specialization)
        if let cached = residentProgram(key) { return cached }
        let options = Self.compilerOptions(specialization.text)
        let (program, entry) = try programBuildLock.withLock { builds -> (CompiledProgram, (key: String, binary: [UInt8])?) in
            if let cached = residentProgram(key) { return (cached, nil) }
            let text = CompiledProgram.sourceText(of: source)
            let diskKey = store.map { _ in
                ProgramBinaryKey.text(sourceName: source.name, sourceText: text, options: options, device: device)
            }
            if let store, let diskKey, case .hit(let binary) = store.load(key: diskKey),
                let loaded = CompiledProgram.load(
                    binary: binary, sourceName: source.name, options: options, context: context, device: device,
                    objects: objects)
            {
                insert(loaded, for: key, loadedFromDisk: true)
                return (loaded, nil)
            }
            let built = try CompiledProgram.build(
                source: source, text: text, options: options, context: context, device: device, objects: objects)
            builds += 1
            insert(built, for: key, loadedFromDisk: false)
            // Read while builds are serialised: the query may make a driver compile too.
            return (built, diskKey.flatMap { diskKey in built.binary(device: device).map { (diskKey, $0) } })
        }
        // Written outside the build lock: file I/O need not hold up other builds.
        if let store, let entry {
            do {
                try store.store(key: entry.key, payload: entry.binary)
            } catch {
                ProgramBinaryStore.reportOnce("cannot write to \(store.directory): \(error)")
            }
        }
        return program
    }

    /// The resident program for `key`, marked as just used.
    private func residentProgram(_ key: Key) -> CompiledProgram? {
        state.withLock { state in
            guard var resident = state.resident[key] else { return nil }
            state.clock += 1
            resident.lastUse = state.clock
            state.resident[key] = resident
            return resident.program
        }
    }

    /// Adds a program just built or loaded, dropping the least recently used ones beyond
    /// the limit. A linear search for the oldest: it runs once per build (which takes
    /// 0.1–1 s), over at most the limit's programs.
    private func insert(_ program: CompiledProgram, for key: Key, loadedFromDisk: Bool) {
        // Released outside the lock (`clReleaseProgram` and its kernels').
        var evicted: [CompiledProgram] = []
        state.withLock { state in
            state.clock += 1
            state.resident[key] = Resident(program: program, lastUse: state.clock)
            if loadedFromDisk { state.binaryLoads += 1 } else { state.sourceBuilds += 1 }
            while state.resident.count > configuration.memoryLimit,
                let oldest = state.resident.min(by: { $0.value.lastUse < $1.value.lastUse })?.key
            {
                if let removed = state.resident.removeValue(forKey: oldest) { evicted.append(removed.program) }
                state.evictions += 1
            }
        }
        withExtendedLifetime(evicted) {}  // the last references go here, outside the lock
    }

    func releaseAll() {
        // Taken out under the lock, released (at the end of this scope) outside it.
        let released = state.withLock { state in
            defer { state.resident.removeAll() }
            return state.resident
        }
        withExtendedLifetime(released) {}
    }
}

/// Serialises program builds across every runtime of the process: two threads asking
/// for the same program share one build, and compilers (PoCL's among them) are not
/// all safe to run from several threads at once. It guards the process's build count
/// rather than `Void` (see ``PosixMutex`` on zero-sized values).
private let programBuildLock = PosixMutex<Int>(0)

/// A built `cl_program` and a pool of its kernel objects.
///
/// `clSetKernelArg` is the one OpenCL call that is not thread-safe, so a kernel object
/// is checked out to one launch at a time; launches on other threads get their own.
///
/// Why `@unchecked Sendable` is honest: `handle` is a `let` used only for the
/// thread-safe `clCreateKernel` and released in `deinit`; the idle kernels live behind a
/// ``PosixMutex``, and a kernel taken out of it belongs to one launch until it is put back.
final class CompiledProgram: @unchecked Sendable {
    let handle: cl_program
    let sourceName: String
    private let objects: OpenCLObjectCounts
    private let idleKernels = PosixMutex<[String: [KernelHandle]]>([:])
    /// The kernels launched at least once (see ``claimFirstLaunch(of:)``).
    private let launchedKernels = PosixMutex<Set<String>>([])
    /// The kernels whose launch arguments have been checked (see ``checkSignatureOnce(of:kernel:arguments:names:)``).
    private let checkedKernels = PosixMutex<Set<String>>([])
    /// Per kernel, which parameters it may write through (see ``writablePointers(of:)``).
    private let writableParameters = PosixMutex<[String: [Bool]]>([:])

    /// `@unchecked`: a `cl_kernel` moves between threads only through the idle pool's
    /// mutex, while no launch uses it.
    private struct KernelHandle: @unchecked Sendable {
        let kernel: cl_kernel
    }

    private init(handle: cl_program, sourceName: String, objects: OpenCLObjectCounts) {
        self.handle = handle
        self.sourceName = sourceName
        self.objects = objects
    }

    deinit {
        idleKernels.withLock { pools in
            for handle in pools.values.joined() {
                clReleaseKernel(handle.kernel)
                objects.released(.kernel)
            }
        }
        clReleaseProgram(handle)
        objects.released(.program)
    }

    /// The text compiled for `source`: the shared library (`Kernels/common.cl`,
    /// `Kernels/reduction.cl`) first; `#line` keeps the build log's line numbers those of
    /// the op's own file.
    static func sourceText(of source: KernelSource) -> String {
        KernelSource.sharedLibrary.contains(source)
            ? source.text
            : KernelSource.sharedLibrary.map(\.text).joined(separator: "\n") + "\n#line 1\n" + source.text
    }

    /// Compiles `text` (``sourceText(of:)`` of `source`) with `options`.
    static func build(
        source: KernelSource, text: String, options: String, context: cl_context, device: OpenCLDevice,
        objects: OpenCLObjectCounts
    ) throws -> CompiledProgram {
        var status: cl_int = CL_SUCCESS
        let program: cl_program? = text.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            return clCreateProgramWithSource(context, 1, &pointer, nil, &status)
        }
        guard let program, status == CL_SUCCESS else {
            throw OpenCLError(code: status, call: "clCreateProgramWithSource(\(source.name))")
        }
        objects.created(.program)
        var deviceID: cl_device_id? = device.id
        // Through the exit gate: exit waits for a build in progress (see ProcessExit).
        status = ProcessExit.gate.pass { clBuildProgram(program, 1, &deviceID, options, nil, nil) }
        // The compiler may have registered exit-time destructors, even for a failed build.
        ProcessExit.programBuilt()
        if status != CL_SUCCESS {
            let log = buildLog(program, device: device.id)
            clReleaseProgram(program)
            objects.released(.program)
            throw KernelBuildError(
                program: source.name, options: options, device: device.name,
                status: OpenCLError(code: status, call: "clBuildProgram"), log: log)
        }
        return CompiledProgram(handle: program, sourceName: source.name, objects: objects)
    }

    /// The program for a driver binary from the disk cache, or nil when the driver
    /// rejects it (`clCreateProgramWithBinary` or `clBuildProgram` fails: a binary of
    /// another driver build, or damaged in a way the entry's checksum could not see); the
    /// caller then compiles the source. Through the exit gate like a source build: a
    /// driver may run its compiler's back end here.
    static func load(
        binary: [UInt8], sourceName: String, options: String, context: cl_context, device: OpenCLDevice,
        objects: OpenCLObjectCounts
    ) -> CompiledProgram? {
        var status: cl_int = CL_SUCCESS
        var binaryStatus: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        let program: cl_program? = binary.withUnsafeBufferPointer { bytes in
            var length = bytes.count
            var pointer: UnsafePointer<UInt8>? = bytes.baseAddress
            return clCreateProgramWithBinary(context, 1, &deviceID, &length, &pointer, &binaryStatus, &status)
        }
        guard let program else { return nil }
        objects.created(.program)
        if status == CL_SUCCESS && binaryStatus == CL_SUCCESS {
            status = ProcessExit.gate.pass { clBuildProgram(program, 1, &deviceID, options, nil, nil) }
            ProcessExit.programBuilt()
            if status == CL_SUCCESS { return CompiledProgram(handle: program, sourceName: sourceName, objects: objects) }
        }
        clReleaseProgram(program)
        objects.released(.program)
        return nil
    }

    /// The driver's binary of this built program for `device` (`CL_PROGRAM_BINARIES`),
    /// for the disk cache; nil when the driver gives none. Through the exit gate: a driver
    /// may finish compiling to produce it.
    func binary(device: OpenCLDevice) -> [UInt8]? {
        ProcessExit.gate.pass { () -> [UInt8]? in
            var deviceCount: cl_uint = 0
            guard clGetProgramInfo(handle, cl_program_info(CL_PROGRAM_NUM_DEVICES), MemoryLayout<cl_uint>.size, &deviceCount, nil)
                == CL_SUCCESS, deviceCount == 1
            else { return nil }
            var size = 0
            guard clGetProgramInfo(handle, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil)
                == CL_SUCCESS, size > 0
            else { return nil }
            var bytes = [UInt8](repeating: 0, count: size)
            let status = bytes.withUnsafeMutableBufferPointer { buffer in
                var pointer: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
                return clGetProgramInfo(
                    handle, cl_program_info(CL_PROGRAM_BINARIES), MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointer, nil)
            }
            return status == CL_SUCCESS ? bytes : nil
        }
    }

    private static func buildLog(_ program: cl_program, device: cl_device_id) -> String {
        let log = try? infoString("clGetProgramBuildInfo") {
            clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), $0, $1, $2)
        }
        return log.flatMap { $0.isEmpty ? nil : $0 } ?? "(no build log)"
    }

    /// True for the first call with `name` (the first launch of that kernel, which makes
    /// PoCL compile its work-group function; see `ProcessExit`), false afterwards.
    func claimFirstLaunch(of name: String) -> Bool {
        launchedKernels.withLock { $0.insert(name).inserted }
    }

    /// Checks a launch's arguments against `kernel`'s parameter list the first time
    /// `name` is launched from this program (see ``KernelSignature``).
    /// The arguments and names are formed only for that first check.
    func checkSignatureOnce(
        of name: String, kernel: cl_kernel, arguments: @autoclosure () -> [KernelArgument],
        names: @autoclosure () -> [String]?
    ) throws {
        guard checkedKernels.withLock({ !$0.contains(name) }) else { return }
        try KernelSignature(of: kernel).verify(arguments(), names: names(), kernel: "\(sourceName).\(name)")
        checkedKernels.withLock { _ = $0.insert(name) }
    }

    /// For each parameter of kernel `name`, whether the kernel may write through it (a
    /// pointer not declared `const`); read once from the kernel and kept.
    func writablePointers(of name: String) throws -> [Bool] {
        if let known = writableParameters.withLock({ $0[name] }) { return known }
        let writable = try withKernel(name) { try KernelSignature(of: $0) }.parameters.map(\.isWritablePointer)
        writableParameters.withLock { $0[name] = writable }
        return writable
    }

    /// Runs `body` with a kernel object for `name` that no other thread is using.
    func withKernel<R>(_ name: String, _ body: (cl_kernel) throws -> R) throws -> R {
        let kernel: cl_kernel
        if let idle = idleKernels.withLock({ $0[name]?.popLast() }) {
            kernel = idle.kernel
        } else {
            var status: cl_int = CL_SUCCESS
            guard let created = clCreateKernel(handle, name, &status), status == CL_SUCCESS else {
                throw OpenCLError(code: status, call: "clCreateKernel(\(sourceName).\(name))")
            }
            kernel = created
            objects.created(.kernel)
        }
        defer { idleKernels.withLock { $0[name, default: []].append(KernelHandle(kernel: kernel)) } }
        return try body(kernel)
    }
}
