import COpenCL

/// Compiled programs of one context, keyed by (kernel file name, build options).
///
/// Each distinct key is built once per process; concurrent first requests for the
/// same key wait for the one build instead of compiling twice. A failed build is not
/// cached, so a later call reports the same ``KernelBuildError`` again.
final class ProgramCache: Sendable {
    /// Names, not texts: each kernel file has a unique name, and hashing a name is
    /// cheap on every launch.
    private struct Key: Hashable {
        let sourceName: String
        let options: String
    }

    private let programs = PosixMutex<[Key: CompiledProgram]>([:])
    private let objects: OpenCLObjectCounts

    init(objects: OpenCLObjectCounts) {
        self.objects = objects
    }

    /// The number of programs built so far (for tests of the cache).
    var count: Int { programs.withLock { $0.count } }

    func program(source: KernelSource, options: String, context: cl_context, device: OpenCLDevice) throws -> CompiledProgram {
        let key = Key(sourceName: source.name, options: options)
        if let cached = programs.withLock({ $0[key] }) { return cached }
        return try programBuildLock.withLock { builds in
            if let cached = programs.withLock({ $0[key] }) { return cached }
            let built = try CompiledProgram.build(
                source: source, options: options, context: context, device: device, objects: objects)
            builds += 1
            programs.withLock { $0[key] = built }
            return built
        }
    }

    func releaseAll() {
        programs.withLock { $0.removeAll() }
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

    static func build(
        source: KernelSource, options: String, context: cl_context, device: OpenCLDevice, objects: OpenCLObjectCounts
    ) throws -> CompiledProgram {
        var status: cl_int = CL_SUCCESS
        // The shared library (`Kernels/common.cl`, `Kernels/reduction.cl`) first; `#line`
        // keeps the build log's line numbers those of the op's own file.
        let text = KernelSource.sharedLibrary.contains(source)
            ? source.text
            : KernelSource.sharedLibrary.map(\.text).joined(separator: "\n") + "\n#line 1\n" + source.text
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
    func checkSignatureOnce(of name: String, kernel: cl_kernel, arguments: [KernelArgument], names: [String]?) throws {
        guard checkedKernels.withLock({ !$0.contains(name) }) else { return }
        try KernelSignature(of: kernel).verify(arguments, names: names, kernel: "\(sourceName).\(name)")
        checkedKernels.withLock { _ = $0.insert(name) }
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
