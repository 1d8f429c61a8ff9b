import Testing
@testable import NormCL

extension PropertyCase {
    /// Runs the case: the reference-only invariants always (so machines without OpenCL
    /// still test something), and, when a device is present, OpenCL against the
    /// reference through the op's harness, with the tolerances the harness states.
    /// Errors are recorded as issues (PropertyBased counts issues, not thrown errors).
    func check() {
        do {
            try checkInvariants()
            if let runtime = sharedRuntime { try checkAgainstReference(on: runtime) }
        } catch {
            Issue.record("\(self): threw \(error)")
        }
    }

    /// OpenCL (automatic plan) against the float64 reference, through the harnesses the
    /// op's own suites use.
    func checkAgainstReference(on runtime: OpenCLRuntime) throws {
        let backend = Backend.openCL(runtime)
        switch op {
        case .batchNorm(let mode):
            if backward {
                var harness = BatchNormBackwardHarness(shape: shape, affine: affine, seed: seed)
                harness.layout = layout
                harness.elementType = elementType
                harness.eps = eps
                switch mode {
                case .training: harness.mode = .training
                case .inference: harness.mode = .inference
                case .renorm(let rmax, let dmax): harness.mode = .renorm(BatchRenormLimits(rmax: rmax, dmax: dmax))
                }
                try harness.check(on: backend, mask: mask)
            } else {
                var harness = BatchNormHarness(shape: shape, affine: affine, tracking: true, seed: seed)
                harness.layout = layout
                harness.elementType = elementType
                harness.eps = eps
                harness.momentum = momentum
                if case .renorm(let rmax, let dmax) = mode { harness.renorm = BatchRenormLimits(rmax: rmax, dmax: dmax) }
                try harness.check(on: backend, training: mode != .inference)
            }
        case .layerNorm, .rmsNorm:
            let kind: RowNormProblem.Kind = op == .layerNorm ? .layerNorm : .rmsNorm
            if backward {
                let harness = try RowNormBackwardHarness(
                    kind, shape: shape, normalizedShape: normalizedShape, elementType: elementType, affine: affine, seed: seed)
                try harness.check(on: backend, mask: mask)
            } else {
                let harness = RowNormHarness(
                    kind, shape: shape, normalizedShape: normalizedShape, elementType: elementType, affine: affine, eps: eps,
                    seed: seed)
                try harness.check(on: backend)
            }
        case .groupNorm(let groups):
            try checkGroupOrInstance(.group(groups), backwardOp: .group(groups), on: backend)
        case .instanceNorm(let running):
            try checkGroupOrInstance(
                .instance(useInputStats: !running), backwardOp: running ? .instanceRunning : .instance, on: backend)
        case .switchableNorm(let branches, let training):
            if backward {
                var harness = SwitchableNormBackwardHarness(
                    shape: shape, layout: layout, elementType: elementType, affine: affine, seed: seed)
                harness.forward.options = switchableOptions(branches)
                if !branches.hasBatch { harness.forward.runningMean = nil; harness.forward.runningVar = nil }
                harness.mask = mask
                try harness.check(on: runtime, training: training)
            } else {
                var harness = SwitchableNormHarness(
                    shape: shape, layout: layout, elementType: elementType, affine: affine, seed: seed)
                harness.options = switchableOptions(branches)
                if !branches.hasBatch { harness.runningMean = nil; harness.runningVar = nil }
                try harness.check(on: backend, training: training)
            }
        }
    }

    private func checkGroupOrInstance(
        _ forwardOp: GroupNormHarness.Op, backwardOp: GroupNormBackwardHarness.Op, on backend: Backend
    ) throws {
        if backward {
            var harness = GroupNormBackwardHarness(op: backwardOp, shape: shape, affine: affine, seed: seed)
            harness.layout = layout
            harness.elementType = elementType
            harness.eps = eps
            harness.mask = mask
            try harness.check(on: backend)
        } else {
            let isInstance: Bool
            if case .instance = forwardOp { isInstance = true } else { isInstance = false }
            var harness = GroupNormHarness(op: forwardOp, shape: shape, affine: affine, tracking: isInstance, seed: seed)
            harness.layout = layout
            harness.elementType = elementType
            harness.eps = eps
            harness.momentum = momentum
            try harness.check(on: backend)
        }
    }

    /// The options for `branches` with this case's eps and momentum; the biased
    /// estimator where a spatial size of 1 leaves the unbiased one undefined.
    func switchableOptions(_ branches: SwitchableNormOptions.Branches) -> SwitchableNormOptions {
        SwitchableNormOptions(
            branches: branches, varianceEstimator: spatial == 1 ? .biased : .unbiased, eps: eps, momentum: momentum)
    }
}
