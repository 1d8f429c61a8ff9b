import COpenCL

// BatchNorm and Batch Renorm for include/normcl.h: per channel of (N, C, *spatial). The
// plain functions are the fused ones without an addend and without an epilogue.

/// `normcl_batch_norm_forward_training`: BatchNorm with batch statistics, the running
/// statistics (when given) updated in place.
@_spi(CAPI) @_cdecl("normcl_batch_norm_forward_training")
public func normcl_batch_norm_forward_training(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ momentum: Float,
    _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float, _ y: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_norm_forward_training_fused(
        runtime, x, weight, bias, runningMean, runningVar, momentum, numBatchesTracked, eps, nil, nil, y, saveMean,
        saveInvstd, waitCount, waitList, event)
}

/// `normcl_batch_norm_forward_training_fused`: `y = f(BN(x) + addend)` with batch
/// statistics, the running statistics (when given) updated in place.
@_spi(CAPI) @_cdecl("normcl_batch_norm_forward_training_fused")
public func normcl_batch_norm_forward_training_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ momentum: Float,
    _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float, _ addend: CTensorArgument,
    _ epilogue: CEpilogueArgument, _ y: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try batchNormTraining(
            call, x: x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, renorm: nil,
            momentum: momentum, numBatchesTracked: numBatchesTracked, eps: eps, addend: addend, epilogue: epilogue,
            y: y, saveMean: saveMean, saveInvstd: saveInvstd)
    }
}

/// `normcl_batch_renorm_forward`: Batch Renorm's training forward, the running
/// statistics updated in place, `r` and `d` into renorm_r and renorm_d.
@_spi(CAPI) @_cdecl("normcl_batch_renorm_forward")
public func normcl_batch_renorm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ rmax: Float, _ dmax: Float,
    _ momentum: Float, _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float, _ y: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ renormR: CTensorArgument,
    _ renormD: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_renorm_forward_fused(
        runtime, x, weight, bias, runningMean, runningVar, rmax, dmax, momentum, numBatchesTracked, eps, nil, nil, y,
        saveMean, saveInvstd, renormR, renormD, waitCount, waitList, event)
}

/// `normcl_batch_renorm_forward_fused`: `y = f(BatchRenorm(x) + addend)`, the running
/// statistics updated in place, `r` and `d` into renorm_r and renorm_d.
@_spi(CAPI) @_cdecl("normcl_batch_renorm_forward_fused")
public func normcl_batch_renorm_forward_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ rmax: Float, _ dmax: Float,
    _ momentum: Float, _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float, _ addend: CTensorArgument,
    _ epilogue: CEpilogueArgument, _ y: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ renormR: CTensorArgument, _ renormD: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try batchNormTraining(
            call, x: x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
            renorm: (BatchRenormLimits(rmax: rmax, dmax: dmax), renormR, renormD), momentum: momentum,
            numBatchesTracked: numBatchesTracked, eps: eps, addend: addend, epilogue: epilogue, y: y,
            saveMean: saveMean, saveInvstd: saveInvstd)
    }
}

/// BatchNorm's and Batch Renorm's training forward (`renorm` nil for BatchNorm), plain
/// or fused.
private func batchNormTraining(
    _ call: CAPICall, x: CTensorArgument, weight: CTensorArgument, bias: CTensorArgument,
    runningMean: CTensorArgument, runningVar: CTensorArgument,
    renorm: (limits: BatchRenormLimits, r: CTensorArgument, d: CTensorArgument)?, momentum: Float,
    numBatchesTracked: UnsafeMutablePointer<Int64>?, eps: Float, addend: CTensorArgument, epilogue: CEpilogueArgument,
    y: CTensorArgument, saveMean: CTensorArgument, saveInvstd: CTensorArgument
) throws -> [KernelEvent] {
    let input = try call.required(x, "x")
    let (addend, activation) = try call.batchNormEpilogue(addend, epilogue)
    var running = try call.runningStatistics(runningMean, runningVar, tracked: numBatchesTracked)
    if renorm != nil && running == nil {
        throw NormError.invalidArgument(argument: "running_mean", reason: "Batch Renorm needs running statistics")
    }
    let momentum = try call.momentum(momentum, running: running, tracked: numBatchesTracked)
    let destinations = try call.forward(y: y, saveMean: saveMean, saveInvstd: saveInvstd, running: running)
    let (r, d) = (try call.tensor(renorm?.r, "renorm_r"), try call.tensor(renorm?.d, "renorm_d"))
    let out = try batchNorm(
        input, weight: call.tensor(weight, "weight"), bias: call.tensor(bias, "bias"), runningStatistics: &running,
        training: true, momentum: momentum, eps: eps, strategy: nil, renorm: renorm?.limits, activation: activation,
        addend: addend, call: call.op(destinations))
    let events = try call.deliver(
        call.deliver(
            out.events, output: out.output, saveMean: out.saveMean, saveInvstd: out.saveInvstd, running: running,
            into: destinations),
        [(out.renormR, r, "renorm_r"), (out.renormD, d, "renorm_d")])
    call.store(running, into: numBatchesTracked)
    return events
}

/// `normcl_batch_norm_forward_inference`: BatchNorm with the running statistics.
@_spi(CAPI) @_cdecl("normcl_batch_norm_forward_inference")
public func normcl_batch_norm_forward_inference(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ eps: Float, _ y: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_norm_forward_inference_fused(
        runtime, x, weight, bias, runningMean, runningVar, eps, nil, nil, y, waitCount, waitList, event)
}

/// `normcl_batch_norm_forward_inference_fused`: `y = f(BN(x) + addend)` with the running statistics.
@_spi(CAPI) @_cdecl("normcl_batch_norm_forward_inference_fused")
public func normcl_batch_norm_forward_inference_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ eps: Float, _ addend: CTensorArgument,
    _ epilogue: CEpilogueArgument, _ y: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let (addend, activation) = try call.batchNormEpilogue(addend, epilogue)
        var running = try call.runningStatistics(runningMean, runningVar)
        let destinations = try call.forward(y: y, saveMean: nil, saveInvstd: nil)
        let out = try batchNorm(
            input, weight: call.tensor(weight, "weight"), bias: call.tensor(bias, "bias"), runningStatistics: &running,
            training: false, momentum: 0, eps: eps, strategy: nil, activation: activation, addend: addend,
            call: call.op(destinations))
        return try call.deliver(out.events, output: out.output, saveMean: nil, saveInvstd: nil, into: destinations)
    }
}

/// `normcl_batch_norm_backward_training`: the backward through the batch statistics.
@_spi(CAPI) @_cdecl("normcl_batch_norm_backward_training")
public func normcl_batch_norm_backward_training(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ dx: CTensorArgument,
    _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_norm_backward_training_fused(
        runtime, dy, x, weight, nil, saveMean, saveInvstd, nil, nil, dx, dweight, dbias, nil, waitCount, waitList, event)
}

/// `normcl_batch_norm_backward_training_fused`: the backward of
/// `normcl_batch_norm_forward_training_fused`, dz into the caller's dz.
@_spi(CAPI) @_cdecl("normcl_batch_norm_backward_training_fused")
public func normcl_batch_norm_backward_training_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ addend: CTensorArgument,
    _ epilogue: CEpilogueArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ dz: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try batchNormBackward(
            call, dy: dy, x: x, weight: weight, bias: bias, addend: addend, epilogue: epilogue, dx: dx,
            dweight: dweight, dbias: dbias, dz: dz
        ) {
            .batch(mean: try call.required(saveMean, "save_mean"), invstd: try call.required(saveInvstd, "save_invstd"))
        }
    }
}

/// `normcl_batch_renorm_backward`: Batch Renorm's backward, `r` and `d` constant.
@_spi(CAPI) @_cdecl("normcl_batch_renorm_backward")
public func normcl_batch_renorm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ renormR: CTensorArgument,
    _ renormD: CTensorArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_renorm_backward_fused(
        runtime, dy, x, weight, nil, saveMean, saveInvstd, renormR, renormD, nil, nil, dx, dweight, dbias, nil,
        waitCount, waitList, event)
}

/// `normcl_batch_renorm_backward_fused`: the backward of `normcl_batch_renorm_forward_fused`,
/// dz into the caller's dz.
@_spi(CAPI) @_cdecl("normcl_batch_renorm_backward_fused")
public func normcl_batch_renorm_backward_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ renormR: CTensorArgument,
    _ renormD: CTensorArgument, _ addend: CTensorArgument, _ epilogue: CEpilogueArgument, _ dx: CTensorArgument,
    _ dweight: CTensorArgument, _ dbias: CTensorArgument, _ dz: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try batchNormBackward(
            call, dy: dy, x: x, weight: weight, bias: bias, addend: addend, epilogue: epilogue, dx: dx,
            dweight: dweight, dbias: dbias, dz: dz
        ) {
            .renorm(
                mean: try call.required(saveMean, "save_mean"), invstd: try call.required(saveInvstd, "save_invstd"),
                r: try call.required(renormR, "renorm_r"), d: try call.required(renormD, "renorm_d"))
        }
    }
}

/// `normcl_batch_norm_backward_inference`: the backward with the running statistics constant.
@_spi(CAPI) @_cdecl("normcl_batch_norm_backward_inference")
public func normcl_batch_norm_backward_inference(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ eps: Float, _ dx: CTensorArgument,
    _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_batch_norm_backward_inference_fused(
        runtime, dy, x, weight, nil, runningMean, runningVar, eps, nil, nil, dx, dweight, dbias, nil, waitCount,
        waitList, event)
}

/// `normcl_batch_norm_backward_inference_fused`: the backward of
/// `normcl_batch_norm_forward_inference_fused`, dz into the caller's dz.
@_spi(CAPI) @_cdecl("normcl_batch_norm_backward_inference_fused")
public func normcl_batch_norm_backward_inference_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ eps: Float,
    _ addend: CTensorArgument, _ epilogue: CEpilogueArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument,
    _ dbias: CTensorArgument, _ dz: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try batchNormBackward(
            call, dy: dy, x: x, weight: weight, bias: bias, addend: addend, epilogue: epilogue, dx: dx,
            dweight: dweight, dbias: dbias, dz: dz
        ) {
            .running(
                mean: try call.required(runningMean, "running_mean"),
                variance: try call.required(runningVar, "running_var"), eps: eps)
        }
    }
}

extension CAPICall {
    /// The addend and the activation of a BatchNorm call's epilogue.
    fileprivate func batchNormEpilogue(
        _ addend: CTensorArgument, _ epilogue: CEpilogueArgument
    ) throws -> (addend: Tensor?, activation: Activation) {
        let activation = try CEpilogue(epilogue).withoutWeightOffset("BatchNorm")
        return (try tensor(addend, "addend"), activation)
    }
}

/// The BatchNorm and Batch Renorm backward functions: one implementation, the statistics
/// from `statistics`; `bias`, `addend` and `epilogue` are the forward's, `dz` the addend's
/// gradient.
private func batchNormBackward(
    _ call: CAPICall, dy: CTensorArgument, x: CTensorArgument, weight: CTensorArgument, bias: CTensorArgument,
    addend: CTensorArgument, epilogue: CEpilogueArgument, dx: CTensorArgument, dweight: CTensorArgument,
    dbias: CTensorArgument, dz: CTensorArgument, statistics: () throws -> BatchNormBackwardProblem.Statistics
) throws -> [KernelEvent] {
    try call.backward(dx: dx, dweight: dweight, dbias: dbias, dz: dz) { destinations, mask in
        let (gradOutput, input) = (try call.required(dy, "dy"), try call.required(x, "x"))
        let (addend, activation) = try call.batchNormEpilogue(addend, epilogue)
        try call.requireSource(for: dz, "dz", addend, "is the addend's gradient: the forward had no addend")
        return try batchNormBackward(
            gradOutput, input: input, weight: call.tensor(weight, "weight"), statistics: statistics(), outputMask: mask,
            strategy: nil, bias: call.tensor(bias, "bias"), activation: activation, addend: addend,
            call: call.op(backward: destinations))
    }
}
