import COpenCL

// LayerNorm and RMSNorm for include/normcl.h: `normalized_rank` trailing dims of x.

/// `normcl_layer_norm_forward`: ``layerNorm(_:normalizedShape:weight:bias:eps:residual:returnsResidualSum:weightOffset:activation:into:waitingFor:)``
/// into the caller's y, save_mean and save_invstd.
@_spi(CAPI) @_cdecl("normcl_layer_norm_forward")
public func normcl_layer_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ eps: Float, _ y: CTensorArgument, _ saveMean: CTensorArgument,
    _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let normalizedShape = try call.normalizedShape(of: input, rank: normalizedRank)
        let destinations = try call.forward(y: y, saveMean: saveMean, saveInvstd: saveInvstd)
        let out = try layerNorm(
            input, normalizedShape: normalizedShape, weight: call.tensor(weight, "weight"), bias: call.tensor(bias, "bias"),
            eps: eps, strategy: nil, tuning: nil, call: call.op(destinations))
        return try call.deliver(
            out.events, output: out.output, saveMean: out.saveMean, saveInvstd: out.saveInvstd, into: destinations)
    }
}

/// `normcl_layer_norm_backward`: ``layerNormBackward(_:input:normalizedShape:weight:saveMean:saveInvstd:outputMask:into:waitingFor:)``
/// into the caller's dx, dweight and dbias (the non-NULL ones).
@_spi(CAPI) @_cdecl("normcl_layer_norm_backward")
public func normcl_layer_norm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ normalizedRank: Int32,
    _ weight: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument,
    _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try call.backward(dx: dx, dweight: dweight, dbias: dbias) { destinations, mask in
            let input = try call.required(x, "x")
            return try layerNormBackward(
                call.required(dy, "dy"), input: input,
                normalizedShape: call.normalizedShape(of: input, rank: normalizedRank),
                weight: call.tensor(weight, "weight"), saveMean: call.required(saveMean, "save_mean"),
                saveInvstd: call.required(saveInvstd, "save_invstd"), outputMask: mask, strategy: nil,
                fuseParameters: nil, tuning: nil, call: call.op(backward: destinations))
        }
    }
}

/// `normcl_rms_norm_forward`: ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:returnsResidualSum:weightOffset:activation:into:waitingFor:)``
/// into the caller's y and save_invrms (`NORMCL_EPS_DEFAULT`, -1: the dtype's epsilon).
@_spi(CAPI) @_cdecl("normcl_rms_norm_forward")
public func normcl_rms_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ eps: Float, _ y: CTensorArgument, _ saveInvRms: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        let input = try call.required(x, "x")
        let normalizedShape = try call.normalizedShape(of: input, rank: normalizedRank)
        let destinations = try call.forward(y: y, saveMean: nil, saveInvstd: saveInvRms, saveName: "save_invrms")
        let out = try rmsNorm(
            input, normalizedShape: normalizedShape, weight: call.tensor(weight, "weight"), eps: eps == -1 ? nil : eps,
            strategy: nil, tuning: nil, call: call.op(destinations))
        return try call.deliver(
            out.events, output: out.output, saveMean: nil, saveInvstd: out.saveInvRms, into: destinations,
            saveName: "save_invrms")
    }
}

/// `normcl_rms_norm_backward`: the RMSNorm backward from the forward's saved `1/rms`,
/// into the caller's dx and dweight (the non-NULL ones).
@_spi(CAPI) @_cdecl("normcl_rms_norm_backward")
public func normcl_rms_norm_backward(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ normalizedRank: Int32,
    _ weight: CTensorArgument, _ saveInvRms: CTensorArgument, _ dx: CTensorArgument,
    _ dweight: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try call.backward(dx: dx, dweight: dweight, dbias: nil) { destinations, mask in
            let input = try call.required(x, "x")
            return try rmsNormBackward(
                call.required(dy, "dy"), input: input,
                normalizedShape: call.normalizedShape(of: input, rank: normalizedRank),
                weight: call.tensor(weight, "weight"), saveInvRms: call.required(saveInvRms, "save_invrms"),
                outputMask: mask, strategy: nil, fuseParameters: nil, tuning: nil, call: call.op(backward: destinations))
        }
    }
}
