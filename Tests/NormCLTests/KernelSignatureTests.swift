import Testing
@testable import NormCL

/// Every launch names its arguments, and the first launch of each kernel of a program
/// compares them with the kernel's own parameter list (`clGetKernelArgInfo`): a call
/// site with its arguments out of order, one too few, or of the wrong kind fails before
/// the kernel runs. (Every other test that runs a kernel exercises the check on the
/// real call sites; these show that it can fail.)
@Suite("Kernel signatures", .enabled(if: hasOpenCL), .serialized)
struct KernelSignatureTests {
    /// The copy kernel `copy_float4(x, y, count)` of a fresh program, so no earlier
    /// launch has passed the check already.
    func copyProgram() throws -> (OpenCLRuntime, CompiledProgram, DeviceBuffer, DeviceBuffer) {
        let runtime = try OpenCLRuntime(device: sharedRuntime!.device, programCache: ProgramCacheConfiguration(directory: nil))
        let program = try runtime.program(
            .memory, options: KernelSpecialization(elementType: .float32, chunkedAccess: true, wideIndices: false).text)
        let x = try DeviceBuffer(byteCount: 64, on: runtime)
        let y = try DeviceBuffer(byteCount: 64, on: runtime)
        return (runtime, program, x, y)
    }

    @Test("the parameter list is read back from the program")
    func parameters() throws {
        let (_, program, _, _) = try copyProgram()
        let signature = try program.withKernel("copy_float4") { try KernelSignature(of: $0) }
        #expect(signature.parameters.map(\.name) == ["x", "y", "count"])
        #expect(signature.parameters.map(\.typeName) == ["float4*", "float4*", "ulong"])
    }

    @Test("matching names, count and kinds launch")
    func matching() throws {
        let (runtime, program, x, y) = try copyProgram()
        try runtime.enqueue(
            "copy_float4", from: program, global: [1], local: [1],
            arguments: ["x": .buffer(x), "y": .buffer(y), "count": .ulong(4)]
        ).wait()
    }

    @Test("swapped names, a missing argument, or a wrong kind throw before the launch")
    func mismatches() throws {
        let (runtime, program, x, y) = try copyProgram()
        let wrong: [(String, KeyValuePairs<String, KernelArgument>)] = [
            ("swapped", ["y": .buffer(y), "x": .buffer(x), "count": .ulong(4)]),
            ("missing", ["x": .buffer(x), "y": .buffer(y)]),
            ("kind", ["x": .buffer(x), "y": .buffer(y), "count": .uint(4)]),
            ("extra", ["x": .buffer(x), "y": .buffer(y), "count": .ulong(4), "more": .float(1)]),
        ]
        for (label, arguments) in wrong {
            #expect(throws: KernelSignatureMismatch.self, "\(label)") {
                try runtime.enqueue("copy_float4", from: program, global: [1], local: [1], arguments: arguments)
            }
        }
        // Positional arguments are checked for count and kinds.
        #expect(throws: KernelSignatureMismatch.self) {
            try runtime.enqueue(
                "copy_float4", from: program, global: [1], local: [1], arguments: [.buffer(x), .buffer(y), .float(4)])
        }
    }
}
