import COpenCL

/// One argument of a kernel launch.
enum KernelArgument {
    /// A buffer, or NULL for an argument the build options leave unused.
    case buffer(DeviceBuffer?)
    case float(Float)
    case uint(UInt32)
    case ulong(UInt64)

    func set(on kernel: cl_kernel, at index: cl_uint) throws(OpenCLError) {
        let status: cl_int
        switch self {
        case .buffer(let buffer):
            var handle: cl_mem? = buffer?.handle
            status = clSetKernelArg(kernel, index, MemoryLayout<cl_mem?>.size, &handle)
        case .float(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<Float>.size, &value)
        case .uint(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<UInt32>.size, &value)
        case .ulong(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<UInt64>.size, &value)
        }
        try check(status, "clSetKernelArg(\(index))")
    }
}
