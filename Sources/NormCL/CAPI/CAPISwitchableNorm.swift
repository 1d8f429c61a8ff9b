import COpenCL

// Switchable Norm for include/normcl.h: y, the mixed statistics, the running statistics
// and the gradients go straight into the caller's tensors; the branch statistics (which
// the Swift op's destinations do not cover) are copied there after the kernels.

/// `normcl_switchable_norm_statistics`: eight descriptors in a row, in this order.
private let statisticsNames = [
    "save_mean", "save_invstd", "instance_mean", "instance_var", "layer_mean", "layer_var", "batch_mean", "batch_var",
].map { "statistics.\($0)" }

extension SwitchableNormStatistics {
    /// The fields in `normcl_switchable_norm_statistics`' order.
    var cOrder: [Values?] { [mean, invstd, instanceMean, instanceVariance, layerMean, layerVariance, batchMean, batchVariance] }
}

extension CAPICall {
    /// The tensors of the `normcl_switchable_norm_statistics` at `pointer` (all absent for NULL).
    func switchableStatistics(_ pointer: CTensorArgument) throws -> [Tensor?] {
        try statisticsNames.indices.map { index in
            try tensor(pointer.map { $0 + index * CTensorDescriptor.size }, statisticsNames[index])
        }
    }

    /// Switchable Norm's options from the C arguments.
    func switchableOptions(branches: Int32, unbiased: Int32, eps: Float) throws -> SwitchableNormOptions {
        let all: [SwitchableNormOptions.Branches] = [.instanceLayerBatch, .instanceLayer, .layerBatch]
        guard all.indices.contains(Int(branches)) else {
            throw NormError.invalidArgument(
                argument: "branches", reason: "\(branches) is not a NORMCL_SWITCHABLE_* value (0, 1 or 2)")
        }
        return SwitchableNormOptions(
            branches: all[Int(branches)], varianceEstimator: unbiased != 0 ? .unbiased : .biased, eps: eps)
    }
}

/// `normcl_switchable_norm_forward`: Switchable Norm into the caller's y and statistics,
/// the running statistics (when given, in training) updated in place.
@_spi(CAPI) @_cdecl("normcl_switchable_norm_forward")
public func normcl_switchable_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ meanLogits: CTensorArgument,
    _ varianceLogits: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ training: Int32, _ branches: Int32,
    _ unbiased: Int32, _ momentum: Float, _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float,
    _ y: CTensorArgument, _ statistics: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let logits = (mean: try call.required(meanLogits, "mean_logits"), variance: try call.required(varianceLogits, "var_logits"))
        let (weight, bias) = (try call.tensor(weight, "weight"), try call.tensor(bias, "bias"))
        let given = try call.runningStatistics(runningMean, runningVar, tracked: numBatchesTracked)
        let updates = training != 0 ? given : nil
        var options = try call.switchableOptions(branches: branches, unbiased: unbiased, eps: eps)
        options.momentum = try call.momentum(momentum, running: updates, tracked: numBatchesTracked)
        var destinations = try call.forward(y: y, saveMean: nil, saveInvstd: nil, running: updates)
        let saved = try call.switchableStatistics(statistics)
        (destinations.saveMean, destinations.saveInvstd) = (saved[0], saved[1])
        var running = given
        let out = try switchableNorm(
            input, meanLogits: logits.mean, varianceLogits: logits.variance, weight: weight, bias: bias,
            runningStatistics: &running, training: training != 0, options: options, strategy: nil,
            call: call.op(destinations))
        let events = try call.deliver(
            call.deliver(
                out.events, output: out.output, saveMean: out.statistics.mean, saveInvstd: out.statistics.invstd,
                running: updates == nil ? nil : running, into: destinations),
            Array(zip(zip(out.statistics.cOrder, saved), statisticsNames).map { ($0.0, $0.1, $1) }))
        call.store(updates == nil ? nil : running, into: numBatchesTracked)
        return events
    }
}

/// `normcl_switchable_norm_backward`: the Switchable Norm backward from the forward's
/// statistics, into the caller's dx, dweight, dbias and logit gradients (the non-NULL ones).
@_spi(CAPI) @_cdecl("normcl_switchable_norm_backward")
public func normcl_switchable_norm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ meanLogits: CTensorArgument,
    _ varianceLogits: CTensorArgument, _ weight: CTensorArgument, _ runningMean: CTensorArgument,
    _ runningVar: CTensorArgument, _ training: Int32, _ branches: Int32, _ unbiased: Int32, _ eps: Float,
    _ statistics: CTensorArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ dMeanLogits: CTensorArgument, _ dVarianceLogits: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try call.backward(
            dx: dx, dweight: dweight, dbias: dbias,
            extra: [({ $0.meanLogits }, dMeanLogits, "d_mean_logits"), ({ $0.varianceLogits }, dVarianceLogits, "d_var_logits")]
        ) { destinations, mask in
            let (gradOutput, input) = (try call.required(dy, "dy"), try call.required(x, "x"))
            let logits = (mean: try call.required(meanLogits, "mean_logits"), variance: try call.required(varianceLogits, "var_logits"))
            let weight = try call.tensor(weight, "weight")
            let running = try call.runningStatistics(runningMean, runningVar)
            let options = try call.switchableOptions(branches: branches, unbiased: unbiased, eps: eps)
            let saved = try call.switchableStatistics(statistics)
            func required(_ index: Int) throws -> Tensor {
                guard let tensor = saved[index] else {
                    throw NormError.invalidArgument(argument: statisticsNames[index], reason: "is NULL: the backward needs it")
                }
                return tensor
            }
            let forward = SwitchableNormOutput(
                output: gradOutput,
                statistics: SwitchableNormStatistics(
                    mean: try required(0), invstd: try required(1), instanceMean: saved[2], instanceVariance: saved[3],
                    layerMean: try required(4), layerVariance: try required(5), batchMean: saved[6], batchVariance: saved[7]),
                events: [])
            return try switchableNormBackward(
                gradOutput, input: input, meanLogits: logits.mean, varianceLogits: logits.variance, weight: weight,
                forward: forward, runningStatistics: running, training: training != 0, options: options,
                outputMask: mask, strategy: nil, call: call.op(backward: destinations))
        }
    }
}

extension SwitchableNormGradients: CAPIGradients {}
