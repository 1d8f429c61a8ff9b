/// How a GroupNorm or InstanceNorm backward pass runs on one OpenCL device: which
/// kernels of `Kernels/group_norm_backward.cl`, and their launch geometry, chosen from
/// the problem's shape, the gradients asked for and the device's limits.
///
/// Every strategy reduces, per (n, c) plane, `Σdy` and `Σdy·(x − mean)` in one pass
/// over `x` and `dy`; combines them per (n, g) row into the coefficients of
/// `dx = a·dy + b·(x − mean) + c`, and per channel (over n, in order) into dγ and dβ.
///
/// Strategies (each says when it applies):
/// - ``Strategy/fusedRows``: channels-first rows (or `(N, C)` input), enough rows to
///   give every compute unit work, or planes too short to split. One work-group per
///   (n, g) row reduces its planes one after another, then writes dx over the row
///   while it is still in cache. One launch (two with dγ/dβ).
/// - ``Strategy/splitPlanes(slicesPerPlane:)``: channels-first, too few rows for the
///   device. `S` work-groups per (n, c) plane write partial sums, one work-item per
///   row merges them in a fixed order into the dx coefficients, and an elementwise
///   pass writes dx. Three launches (four with dγ/dβ), no host wait between them.
/// - ``Strategy/columns(spatialSlices:)``: channels-last input. Work-items own
///   adjacent channel vectors and walk `S` slices of the M spatial rows, writing
///   per-(n, c, slice) sums; then the same merge and a row-wise elementwise pass.
///
/// InstanceNorm with running statistics runs any of them after a kernel that writes
/// the per-(n, c) rows of the running statistics; its dx is then `a·dy` alone and the
/// reductions run only for dγ.
struct GroupNormBackwardPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedRows
        case splitPlanes(slicesPerPlane: Int)
        case columns(spatialSlices: Int)
    }

    let strategy: Strategy
    let mask: NormGradientMask
    /// The launch sizes (shared with the forward plan).
    let geometry: GroupNormGeometry

    /// Whether element indices need 64 bits (``GroupNormGeometry/wideIndices``).
    var wideIndices: Bool { geometry.wideIndices }

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy on shapes where the heuristic would not pick it).
    init(
        problem: GroupNormProblem, mask: NormGradientMask, device: OpenCLDevice, tuning: DeviceTuning,
        strategy forced: Strategy? = nil
    ) {
        switch forced {
        case .fusedRows?, .splitPlanes?:
            precondition(problem.hasContiguousRows, "plane strategies take channels-first memory")
        case .columns?:
            precondition(problem.layout == .channelsLast || problem.spatial == 1, "column strategies take (N, M, C) memory")
        case nil:
            break
        }
        self.mask = mask
        // One float2 (two sums) of local memory per work-item in the reduction tree.
        geometry = GroupNormGeometry(
            problem: problem, device: device, tuning: tuning, reductionBytesPerItem: 2 * MemoryLayout<Float>.size)

        if let forced {
            strategy = forced
        } else if problem.hasContiguousRows {
            // Split when the rows alone cannot fill the device: planes (or slices of
            // them) give more work-groups, as long as each gets a worthwhile share.
            let planes = problem.planes
            let planeVectors = problem.spatial / geometry.vectorWidth
            let slices = geometry.launch.slicesPerSegment(segments: planes, vectorsPerSegment: planeVectors)
            let splits = slices > 1 || (planes > problem.rows && planeVectors >= Self.minimumVectorsPerPlane)
            strategy =
                problem.rows < geometry.launch.targetWorkGroups && splits ? .splitPlanes(slicesPerPlane: slices) : .fusedRows
        } else {
            strategy = .columns(spatialSlices: geometry.columnSlices(for: problem))
        }
    }

    /// Whether the kernels reduce the per-plane sums: for dγ or dβ, and for dx unless
    /// the statistics are constants (running statistics).
    func reduces(_ problem: GroupNormProblem) -> Bool {
        mask.contains(.weight) || mask.contains(.bias) || (mask.contains(.input) && problem.statistics != .running)
    }

    /// What the kernels of `group_norm_backward.cl` are specialised on: the geometry's
    /// options and whether the statistics are running ones (dx's arithmetic differs).
    /// Sizes, γ and which gradients to write are arguments (NULL when not wanted).
    func specialization(for problem: GroupNormProblem) -> KernelSpecialization {
        let columns = if case .columns = strategy { true } else { false }
        var options = geometry.specialization(for: problem, columnKernels: columns)
        options.flag("RUNNING", problem.statistics == .running)
        return options
    }

    /// Planes shorter than this (in vectors) are not worth a work-group of their own.
    static let minimumVectorsPerPlane = 256
}
