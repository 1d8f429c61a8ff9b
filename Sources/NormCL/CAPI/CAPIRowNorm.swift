import COpenCL

// LayerNorm and RMSNorm for include/normcl.h: `normalized_rank` trailing dims of x. The
// plain functions are the fused ones without fused tensors and without an epilogue.

/// `normcl_layer_norm_forward`: ``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``
/// into the caller's y, save_mean and save_invstd.
@_spi(CAPI) @_cdecl("normcl_layer_norm_forward")
public func normcl_layer_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ eps: Float, _ y: CTensorArgument, _ saveMean: CTensorArgument,
    _ saveInvstd: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_layer_norm_forward_fused(
        runtime, x, nil, nil, normalizedRank, weight, bias, eps, nil, y, saveMean, saveInvstd, nil, waitCount, waitList,
        event)
}

/// `normcl_layer_norm_forward_fused`: LayerNorm of h = (x + input_bias) + residual (x
/// without a residual), with the epilogue's γ offset and activation, into the caller's y,
/// statistics and residual_sum.
@_spi(CAPI) @_cdecl("normcl_layer_norm_forward_fused")
public func normcl_layer_norm_forward_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ residual: CTensorArgument, _ inputBias: CTensorArgument,
    _ normalizedRank: Int32,
    _ weight: CTensorArgument, _ bias: CTensorArgument, _ eps: Float, _ epilogue: CEpilogueArgument,
    _ y: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ residualSum: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try rowNormForward(
            call, .layerNorm, x: x, residual: residual, inputBias: inputBias, normalizedRank: normalizedRank,
            weight: weight, bias: bias,
            eps: eps, epilogue: epilogue, y: y, saveMean: saveMean, saveScale: saveInvstd, residualSum: residualSum)
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
    normcl_layer_norm_backward_fused(
        runtime, dy, x, nil, nil, nil, normalizedRank, weight, nil, saveMean, saveInvstd, nil, nil, dx, dweight, dbias,
        nil, waitCount, waitList, event)
}

/// `normcl_layer_norm_backward_fused`: the backward of `normcl_layer_norm_forward_fused`,
/// through its residual, input bias, γ offset and activation, with grad_residual_sum added
/// to dx.
@_spi(CAPI) @_cdecl("normcl_layer_norm_backward_fused")
public func normcl_layer_norm_backward_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ residual: CTensorArgument,
    _ inputBias: CTensorArgument, _ residualSum: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ saveMean: CTensorArgument, _ saveInvstd: CTensorArgument, _ epilogue: CEpilogueArgument,
    _ gradResidualSum: CTensorArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ dInputBias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try rowNormBackward(
            call, .layerNorm, dy: dy, x: x, residual: (residual, inputBias, residualSum), normalizedRank: normalizedRank,
            weight: weight, bias: bias, saveMean: saveMean, saveScale: saveInvstd, epilogue: epilogue,
            gradResidualSum: gradResidualSum, gradients: (dx, dweight, dbias, dInputBias))
    }
}

/// `normcl_rms_norm_forward`: ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``
/// into the caller's y and save_invrms (`NORMCL_EPS_DEFAULT`, -1: the dtype's epsilon).
@_spi(CAPI) @_cdecl("normcl_rms_norm_forward")
public func normcl_rms_norm_forward(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ eps: Float, _ y: CTensorArgument, _ saveInvRms: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    normcl_rms_norm_forward_fused(
        runtime, x, nil, nil, normalizedRank, weight, nil, eps, nil, y, saveInvRms, nil, waitCount, waitList, event)
}

/// `normcl_rms_norm_forward_fused`: RMSNorm of h = (x + input_bias) + residual (x without a
/// residual), with β, the epilogue's γ offset and activation, into the caller's y,
/// save_invrms and residual_sum.
@_spi(CAPI) @_cdecl("normcl_rms_norm_forward_fused")
public func normcl_rms_norm_forward_fused(
    _ runtime: OpaquePointer?, _ x: CTensorArgument, _ residual: CTensorArgument, _ inputBias: CTensorArgument,
    _ normalizedRank: Int32,
    _ weight: CTensorArgument, _ bias: CTensorArgument, _ eps: Float, _ epilogue: CEpilogueArgument,
    _ y: CTensorArgument, _ saveInvRms: CTensorArgument, _ residualSum: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try rowNormForward(
            call, .rmsNorm, x: x, residual: residual, inputBias: inputBias, normalizedRank: normalizedRank,
            weight: weight, bias: bias,
            eps: eps, epilogue: epilogue, y: y, saveMean: nil, saveScale: saveInvRms, residualSum: residualSum)
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
    normcl_rms_norm_backward_fused(
        runtime, dy, x, nil, nil, nil, normalizedRank, weight, nil, saveInvRms, nil, nil, dx, dweight, nil, nil,
        waitCount, waitList, event)
}

/// `normcl_rms_norm_backward_fused`: the backward of `normcl_rms_norm_forward_fused`,
/// through its residual, input bias, β, γ offset and activation, with grad_residual_sum
/// added to dx.
@_spi(CAPI) @_cdecl("normcl_rms_norm_backward_fused")
public func normcl_rms_norm_backward_fused(
    _ runtime: OpaquePointer?, _ dy: CTensorArgument, _ x: CTensorArgument, _ residual: CTensorArgument,
    _ inputBias: CTensorArgument, _ residualSum: CTensorArgument, _ normalizedRank: Int32, _ weight: CTensorArgument,
    _ bias: CTensorArgument, _ saveInvRms: CTensorArgument, _ epilogue: CEpilogueArgument,
    _ gradResidualSum: CTensorArgument, _ dx: CTensorArgument, _ dweight: CTensorArgument, _ dbias: CTensorArgument,
    _ dInputBias: CTensorArgument,
    _ waitCount: cl_uint, _ waitList: CWaitList, _ event: CEventOut
) -> Int32 {
    CAPICall.run(runtime, waitCount, waitList, event) { call in
        try rowNormBackward(
            call, .rmsNorm, dy: dy, x: x, residual: (residual, inputBias, residualSum), normalizedRank: normalizedRank,
            weight: weight, bias: bias, saveMean: nil, saveScale: saveInvRms, epilogue: epilogue,
            gradResidualSum: gradResidualSum, gradients: (dx, dweight, dbias, dInputBias))
    }
}

/// LayerNorm's and RMSNorm's fused forward: one implementation. `saveScale` is LayerNorm's
/// save_invstd or RMSNorm's save_invrms; RMSNorm's `eps` may be `NORMCL_EPS_DEFAULT`.
private func rowNormForward(
    _ call: CAPICall, _ kind: RowNormProblem.Kind, x: CTensorArgument, residual: CTensorArgument,
    inputBias: CTensorArgument, normalizedRank: Int32, weight: CTensorArgument, bias: CTensorArgument, eps: Float, epilogue: CEpilogueArgument, y: CTensorArgument,
    saveMean: CTensorArgument, saveScale: CTensorArgument, residualSum: CTensorArgument
) throws -> [KernelEvent] {
    let input = try call.required(x, "x")
    let normalizedShape = try call.normalizedShape(of: input, rank: normalizedRank)
    let options = try CEpilogue(epilogue)
    let scaleName = kind == .layerNorm ? "save_invstd" : "save_invrms"
    var destinations = try call.forward(y: y, saveMean: saveMean, saveInvstd: saveScale, saveName: scaleName)
    destinations.residualSum = try call.tensor(residualSum, "residual_sum")
    let fused = RowNormFusionArguments(
        residual: try call.tensor(residual, "residual"), inputBias: try call.tensor(inputBias, "input_bias"),
        returnsResidualSum: destinations.residualSum != nil,
        weightOffset: options.weightOffset, activation: options.activation)
    let out = try NormCL.rowNormForward(
        kind, input, normalizedShape: normalizedShape, weight: call.tensor(weight, "weight"),
        bias: call.tensor(bias, "bias"), eps: kind == .rmsNorm && eps == -1 ? input.elementType.epsilon : eps,
        fusing: fused, strategy: nil, tuning: nil, call: call.op(destinations))
    return try call.deliver(
        call.deliver(
            out.events, output: out.output, saveMean: out.saveMean, saveInvstd: out.saveScale, into: destinations,
            saveName: scaleName),
        [(out.residualSum, destinations.residualSum, "residual_sum")])
}

/// LayerNorm's and RMSNorm's fused backward: one implementation. `residual` is the
/// forward's residual and input bias and the h it stored, which is read instead of x and
/// the residual when it has x's element type.
private func rowNormBackward(
    _ call: CAPICall, _ kind: RowNormProblem.Kind, dy: CTensorArgument, x: CTensorArgument,
    residual fused: (residual: CTensorArgument, inputBias: CTensorArgument, sum: CTensorArgument),
    normalizedRank: Int32, weight: CTensorArgument, bias: CTensorArgument, saveMean: CTensorArgument,
    saveScale: CTensorArgument, epilogue: CEpilogueArgument, gradResidualSum: CTensorArgument,
    gradients: (dx: CTensorArgument, dweight: CTensorArgument, dbias: CTensorArgument, dInputBias: CTensorArgument)
) throws -> [KernelEvent] {
    try call.backward(
        dx: gradients.dx, dweight: gradients.dweight, dbias: gradients.dbias, dInputBias: gradients.dInputBias
    ) { destinations, mask in
        let scaleName = kind == .layerNorm ? "save_invstd" : "save_invrms"
        let input = try call.required(x, "x")
        let residual = try call.companion(fused.residual, "residual", of: input, allowsFloat32: true)
        let sum = try call.companion(fused.sum, "residual_sum", of: input, allowsFloat32: true)
        if sum != nil && residual == nil {
            throw NormError.invalidArgument(argument: "residual_sum", reason: "is given without the residual it is the sum with")
        }
        let (bias, inputBias) = (try call.tensor(bias, "bias"), try call.tensor(fused.inputBias, "input_bias"))
        if kind == .rmsNorm {
            try call.requireSource(for: gradients.dbias, "dbias", bias, "RMSNorm has a dβ only with a bias (β): pass NULL")
        }
        try call.requireSource(
            for: gradients.dInputBias, "dinput_bias", inputBias, "is the input bias's gradient: the forward had none")
        let options = try CEpilogue(epilogue)
        return try NormCL.rowNormBackward(
            kind, call.required(dy, "dy"), input: input,
            normalizedShape: call.normalizedShape(of: input, rank: normalizedRank), weight: call.tensor(weight, "weight"),
            saveMean: kind == .layerNorm ? call.required(saveMean, "save_mean") : nil,
            saveScale: call.required(saveScale, scaleName), outputMask: mask,
            fusing: RowNormBackwardFusionArguments(
                forward: RowNormFusionArguments(
                    residual: residual, inputBias: inputBias, weightOffset: options.weightOffset,
                    activation: options.activation),
                bias: bias, gradResidualSum: call.tensor(gradResidualSum, "grad_residual_sum"), residualSum: sum),
            strategy: nil, fuseParameters: nil, tuning: nil, call: call.op(backward: destinations))
    }
}
