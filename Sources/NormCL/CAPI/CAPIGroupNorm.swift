import COpenCL

// GroupNorm and InstanceNorm for include/normcl.h: the Swift ops write into the caller's
// tensors after the caller's events; ``CAPICall/deliver(_:_:)`` copies only what has no
// destination there (an empty input's statistics). GroupNorm's plain functions are the
// fused ones without an epilogue.

/// `normcl_group_norm_forward`: ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)`` into the
/// caller's y, save_mean and save_invstd.
@_spi(CAPI) @_cdecl("normcl_group_norm_forward")
public func normcl_group_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ numGroups: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ eps: Float, _ y: CTensorArgument, _ saveMean: CTensorArgument,
    _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_group_norm_forward_fused(
        runtime, x, numGroups, weight, bias, eps, nil, y, saveMean, saveInvstd, waitCount, waitList, event)
}

/// `normcl_group_norm_forward_fused`: `y = f(GroupNorm(x))`, f the epilogue's activation.
@_spi(CAPI) @_cdecl("normcl_group_norm_forward_fused")
public func normcl_group_norm_forward_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ numGroups: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ eps: Float, _ epilogue: CEpilogueArgument, _ y: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let activation = try CEpilogue(epilogue).withoutWeightOffset("GroupNorm")
        let destinations = try call.forward(y: y, saveMean: saveMean, saveInvstd: saveInvstd)
        let (weight, bias) = (try call.tensor(weight, "weight"), try call.tensor(bias, "bias"))
        let out = try groupNorm(
            input, numGroups: Int(numGroups), weight: weight, bias: bias, eps: eps, activation: activation,
            strategy: nil, call: call.op(destinations))
        return try call.deliver(
            out.events, output: out.output, saveMean: out.saveMean, saveInvstd: out.saveInvstd, into: destinations)
    }
}

/// `normcl_group_norm_backward`: the GroupNorm backward from the forward's saved
/// statistics, into the caller's dx, dweight and dbias (the non-NULL ones).
@_spi(CAPI) @_cdecl("normcl_group_norm_backward")
public func normcl_group_norm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ numGroups: Int32,
    _ weight: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_group_norm_backward_fused(
        runtime, dy, x, numGroups, weight, nil, saveMean, saveInvstd, nil, dx, dweight, dbias, waitCount, waitList,
        event)
}

/// `normcl_group_norm_backward_fused`: the backward of `normcl_group_norm_forward_fused`,
/// through its activation (whose input β shifts).
@_spi(CAPI) @_cdecl("normcl_group_norm_backward_fused")
public func normcl_group_norm_backward_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ numGroups: Int32,
    _ weight: CTensorArgument, _ bias: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ epilogue: CEpilogueArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try call.backward(dx: dx, dweight: dweight, dbias: dbias) { destinations, mask in
            let (gradOutput, input) = (try call.required(dy, "dy"), try call.required(x, "x"))
            let (weight, mean, invstd) = (
                try call.tensor(weight, "weight"), try call.required(saveMean, "save_mean"),
                try call.required(saveInvstd, "save_invstd")
            )
            let activation = try CEpilogue(epilogue).withoutWeightOffset("GroupNorm")
            return try groupNormBackward(
                gradOutput, input: input, numGroups: Int(numGroups), weight: weight, bias: call.tensor(bias, "bias"),
                saveMean: mean, saveInvstd: invstd, activation: activation, outputMask: mask, strategy: nil,
                tuning: nil, call: call.op(backward: destinations))
        }
    }
}

/// `normcl_instance_norm_forward`: InstanceNorm into the caller's y, save_mean and
/// save_invstd, the running statistics (when given and `use_input_stats`) updated in place.
@_spi(CAPI) @_cdecl("normcl_instance_norm_forward")
public func normcl_instance_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ weight: CTensorArgument, _ bias: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ useInputStats: Int32, _ momentum: Float,
    _ numBatchesTracked: UnsafeMutablePointer<Int64>?, _ eps: Float, _ y: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let (weight, bias) = (try call.tensor(weight, "weight"), try call.tensor(bias, "bias"))
        let given = try call.runningStatistics(runningMean, runningVar, tracked: numBatchesTracked)
        let updates = useInputStats != 0 ? given : nil
        let momentum = try call.momentum(momentum, running: updates, tracked: numBatchesTracked)
        let destinations = try call.forward(y: y, saveMean: saveMean, saveInvstd: saveInvstd, running: updates)
        var running = given
        let out = try instanceNorm(
            input, runningStatistics: &running, weight: weight, bias: bias, useInputStats: useInputStats != 0,
            momentum: momentum, eps: eps, strategy: nil, call: call.op(destinations))
        let events = try call.deliver(
            out.events, output: out.output, saveMean: out.saveMean, saveInvstd: out.saveInvstd,
            running: updates == nil ? nil : running, into: destinations)
        call.store(updates == nil ? nil : running, into: numBatchesTracked)
        return events
    }
}

/// `normcl_instance_norm_backward`: the InstanceNorm backward from the forward's saved
/// statistics, into the caller's dx, dweight and dbias (the non-NULL ones).
@_spi(CAPI) @_cdecl("normcl_instance_norm_backward")
public func normcl_instance_norm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ dx: CTensorArgument,
    _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try instanceNormBackward(call, dy: dy, x: x, weight: weight, dx: dx, dweight: dweight, dbias: dbias) {
            .saved(mean: try call.required(saveMean, "save_mean"), invstd: try call.required(saveInvstd, "save_invstd"))
        }
    }
}

/// `normcl_instance_norm_backward_inference`: the InstanceNorm backward with the running
/// statistics constant (a `use_input_stats == 0` forward).
@_spi(CAPI) @_cdecl("normcl_instance_norm_backward_inference")
public func normcl_instance_norm_backward_inference(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ weight: CTensorArgument,
    _ runningMean: CTensorArgument, _ runningVar: CTensorArgument, _ eps: Float, _ dx: CTensorArgument,
    _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try instanceNormBackward(call, dy: dy, x: x, weight: weight, dx: dx, dweight: dweight, dbias: dbias) {
            guard let running = try call.runningStatistics(runningMean, runningVar) else {
                throw NormError.invalidArgument(argument: "running_mean", reason: "is NULL: the running statistics are required")
            }
            return .running(running, eps: eps)
        }
    }
}

/// The two InstanceNorm backward functions: one implementation, the statistics from `statistics`.
private func instanceNormBackward(
    _ call: CAPICall, dy: CTensorArgument, x: CTensorArgument, weight: CTensorArgument, dx: CTensorArgument,
    dweight: CTensorArgument, dbias: CTensorArgument, statistics: () throws -> InstanceNormBackwardStatistics
) throws -> [KernelEvent] {
    try call.backward(dx: dx, dweight: dweight, dbias: dbias) { destinations, mask in
        let (gradOutput, input, weight) = (try call.required(dy, "dy"), try call.required(x, "x"), try call.tensor(weight, "weight"))
        let statistics = try statistics()
        return try instanceNormBackward(
            gradOutput, input: input, weight: weight, statistics: statistics, outputMask: mask, strategy: nil, tuning: nil,
            call: call.op(backward: destinations))
    }
}
