extension Tensor {
    /// The device buffer; only for tensors already checked to be on an OpenCL backend.
    var deviceBuffer: DeviceBuffer? {
        if case .device(let buffer) = storage { buffer } else { nil }
    }

    /// The device buffer of a tensor already checked to be a non-empty OpenCL tensor (ops
    /// handle empty input before they launch anything): a tensor without one here is a
    /// bug in NormCL, not bad input.
    var openCLBuffer: DeviceBuffer {
        guard case .device(let buffer) = storage else { preconditionFailure("an OpenCL tensor without a device buffer") }
        return buffer
    }

    /// The host values; only for tensors already checked to be on the reference backend.
    var hostValues: [Float]? {
        if case .host(let values) = storage { values } else { nil }
    }
}

extension Tensor {
    /// A host tensor of a reference result, rounded to `elementType` as a device
    /// kernel's store would round it.
    init(referenceValues values: [Float], shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32) {
        let stored = elementType == .float32 ? values : values.map { elementType.rounded($0) }
        self.init(shape: shape, layout: layout, elementType: elementType, storage: .host(stored))
    }
}
