import COpenCL

/// The parameter list a kernel was compiled with — names and type names, read back from
/// the program (`clGetKernelArgInfo`; programs are built with `-cl-kernel-arg-info`) —
/// and the check of a launch's arguments against it.
///
/// Kernel arguments are set by position, so an argument list written in the wrong order
/// would otherwise run with its values in the wrong parameters. Every launch names its
/// arguments; the first launch of each kernel of a program compares the names, the
/// count and the kind of each (buffer, `float`, `uint`, `ulong`) with the kernel's own
/// list and throws ``KernelSignatureMismatch`` on any difference. Every test that runs
/// a kernel therefore checks its call site.
struct KernelSignature: Equatable, Sendable {
    struct Parameter: Equatable, Sendable {
        let name: String
        /// The OpenCL C type, e.g. `"float*"`, `"uint"`.
        let typeName: String
        /// Whether the kernel may write through it: a pointer not declared `const`.
        var isWritablePointer: Bool = false
    }

    let parameters: [Parameter]

    /// Reads `kernel`'s parameter list.
    init(of kernel: cl_kernel) throws(OpenCLError) {
        var count: cl_uint = 0
        try check(
            clGetKernelInfo(kernel, cl_kernel_info(CL_KERNEL_NUM_ARGS), MemoryLayout<cl_uint>.size, &count, nil),
            "clGetKernelInfo(CL_KERNEL_NUM_ARGS)")
        var parameters: [Parameter] = []
        for index in 0..<count {
            let name = try infoString("clGetKernelArgInfo(NAME)") {
                clGetKernelArgInfo(kernel, index, cl_kernel_arg_info(CL_KERNEL_ARG_NAME), $0, $1, $2)
            }
            let type = try infoString("clGetKernelArgInfo(TYPE_NAME)") {
                clGetKernelArgInfo(kernel, index, cl_kernel_arg_info(CL_KERNEL_ARG_TYPE_NAME), $0, $1, $2)
            }
            var qualifier: cl_kernel_arg_type_qualifier = 0
            try check(
                clGetKernelArgInfo(
                    kernel, index, cl_kernel_arg_info(CL_KERNEL_ARG_TYPE_QUALIFIER),
                    MemoryLayout<cl_kernel_arg_type_qualifier>.size, &qualifier, nil),
                "clGetKernelArgInfo(TYPE_QUALIFIER)")
            let typeName = type.trimmingSpaces()
            let isConst = qualifier & cl_kernel_arg_type_qualifier(CL_KERNEL_ARG_TYPE_CONST) != 0
            parameters.append(Parameter(name: name, typeName: typeName, isWritablePointer: typeName.hasSuffix("*") && !isConst))
        }
        self.parameters = parameters
    }

    /// Throws unless `arguments` match the parameters one for one: same count, same
    /// names (where given), and a kind that fits each type.
    func verify(_ arguments: [KernelArgument], names: [String]?, kernel: String) throws(KernelSignatureMismatch) {
        func mismatch(_ reason: String) -> KernelSignatureMismatch {
            KernelSignatureMismatch(
                kernel: kernel, reason: reason,
                parameters: parameters.map { "\($0.typeName) \($0.name)" },
                arguments: arguments.indices.map { "\(arguments[$0].kindName) \(names?[$0] ?? "_")" })
        }
        guard arguments.count == parameters.count else {
            throw mismatch("\(arguments.count) arguments for \(parameters.count) parameters")
        }
        for (index, (argument, parameter)) in zip(arguments, parameters).enumerated() {
            if let names, names[index] != parameter.name {
                throw mismatch("argument \(index) is '\(names[index])', the parameter is '\(parameter.name)'")
            }
            guard argument.fits(typeName: parameter.typeName) else {
                throw mismatch("argument \(index) ('\(parameter.name)') is a \(argument.kindName), the parameter a \(parameter.typeName)")
            }
        }
    }
}

/// A launch whose arguments do not match the kernel's parameter list (a bug in NormCL,
/// caught before the kernel runs).
struct KernelSignatureMismatch: Error, CustomStringConvertible {
    let kernel: String
    let reason: String
    let parameters: [String]
    let arguments: [String]

    var description: String {
        "kernel \(kernel): \(reason)\n  parameters: \(parameters.joined(separator: ", "))\n  arguments:  \(arguments.joined(separator: ", "))"
    }
}

extension KernelArgument {
    var kindName: String {
        switch self {
        case .buffer: "buffer"
        case .float: "float"
        case .uint: "uint"
        case .ulong: "ulong"
        }
    }

    /// Whether this argument can be the value of a parameter of OpenCL C type `typeName`.
    func fits(typeName: String) -> Bool {
        switch self {
        case .buffer: typeName.hasSuffix("*")
        case .float: typeName == "float"
        case .uint: typeName == "uint" || typeName == "unsigned int"
        case .ulong: typeName == "ulong" || typeName == "unsigned long"
        }
    }
}
