extension Tensor {
    /// The device buffer; only for tensors already checked to be on an OpenCL backend.
    var deviceBuffer: DeviceBuffer? {
        if case .device(let buffer) = storage { buffer } else { nil }
    }

    /// The host values; only for tensors already checked to be on the reference backend.
    var hostValues: [Float]? {
        if case .host(let values) = storage { values } else { nil }
    }
}
