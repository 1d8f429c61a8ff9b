/// Launch parameters that depend on the kind of device, kept apart from the kernels
/// and the plans (as CLBlast keeps its tuned parameters apart from its routines).
///
/// A device gets its entry in the tuning database (`TuningDatabase.swift`, written by
/// `normcl-bench --tune` on that device), else its kind's defaults: the CPU values were
/// measured on PoCL 3.1 with 2 compute units (the benchmark program run with
/// `NORMCL_TUNING=…` variations); the GPU values follow what peers use (MIOpen,
/// OpenVINO): wide interleaved work-groups for coalesced loads.
public struct DeviceTuning: Sendable, Equatable {
    /// Work-items per work-group in reduction kernels (a power of two).
    public var reductionWorkGroupSize: Int
    /// Work-items per work-group in elementwise kernels.
    public var elementwiseWorkGroupSize: Int
    /// How many work-groups per compute unit keep the device busy.
    public var workGroupsPerComputeUnit: Int
    /// The fewest vectors a reduction work-group should get before a reduction is
    /// split over more work-groups (splitting has a cost: partials and a merge step).
    public var minimumVectorsPerWorkGroup: Int
    /// Whether each work-item walks one contiguous chunk (`true`: CPUs, whose
    /// prefetchers follow a stream) or neighbouring work-items read neighbouring
    /// vectors (`false`: GPUs, which coalesce them).
    public var chunkedAccess: Bool
    /// Adjacent column vectors (of 4 channels) one work-item owns when it walks the
    /// rows of a row-major `(rows, C)` matrix: several on CPUs, so each row segment is
    /// one contiguous read; 1 on GPUs, where neighbouring work-items coalesce.
    public var columnTile: Int
    /// The widest elementwise vector, in floats (16, 8 or 4; 1 loads scalars), that
    /// kernels load and compute on where a size allows it (else the widest narrower one
    /// that divides it). CPUs: the SIMD width. PoCL compiles a kernel's explicit vector
    /// code at that code's width and does not widen it, so float4 arithmetic runs in
    /// 128-bit lanes of an AVX-512 core (measured here, SiLU over 8M floats: float4
    /// 10.9 ms, float16 3.4 ms, a copy 3.0 ms; LayerNorm (8192, 1024) 36% → 86% of copy).
    /// GPUs: 4, a float4 per work-item, whose loads coalesce.
    public var vectorWidth: Int
    /// Kernels that move more than this many bytes (their tensors added up) write their
    /// output with non-temporal stores (`STREAM_BYTES`, `Kernels/common.cl`); 0: never.
    /// A plain store first reads the cache line it writes, a third more memory traffic for
    /// a kernel that reads one tensor and writes one; a non-temporal store does not, but
    /// it leaves the output out of the cache, where the next op would have found it. So
    /// CPUs stream above their last-level cache, where the output would not have stayed
    /// anyway (PoCL here, 32 MiB: BatchNorm inference over 25.7 MB 1.38 → 1.07 ms, with an
    /// addend 2.04 → 1.62 ms; a 4 MB output read back 1.5× slower after streaming). GPUs:
    /// 0 (their stores do not read first, and their compilers may not take the builtin).
    public var streamingStoreBytes: Int

    /// Explicit values, e.g. for a device whose kind's defaults do not fit.
    public init(
        reductionWorkGroupSize: Int, elementwiseWorkGroupSize: Int, workGroupsPerComputeUnit: Int,
        minimumVectorsPerWorkGroup: Int, chunkedAccess: Bool, columnTile: Int, vectorWidth: Int = 4,
        streamingStoreBytes: Int = 0
    ) {
        (self.reductionWorkGroupSize, self.elementwiseWorkGroupSize, self.workGroupsPerComputeUnit) =
            (reductionWorkGroupSize, elementwiseWorkGroupSize, workGroupsPerComputeUnit)
        (self.minimumVectorsPerWorkGroup, self.chunkedAccess, self.columnTile) =
            (minimumVectorsPerWorkGroup, chunkedAccess, columnTile)
        (self.vectorWidth, self.streamingStoreBytes) = (vectorWidth, streamingStoreBytes)
    }

    /// The tuning for `device`: its entry in NormCL's tuning database
    /// (`Sources/NormCL/Runtime/TuningDatabase.swift`, measured on that device by
    /// `normcl-bench --tune`), else the defaults for its kind
    /// (``init(defaultsFor:)``).
    public init(for device: OpenCLDevice) {
        self = TuningDatabase.entry(for: device)?.tuning ?? DeviceTuning(defaultsFor: device.kind)
    }

    /// The defaults for a device of `kind`: what a device without a database entry gets.
    public init(defaultsFor kind: OpenCLDevice.Kind) {
        switch kind {
        case .cpu:
            self.init(
                reductionWorkGroupSize: 16, elementwiseWorkGroupSize: 16, workGroupsPerComputeUnit: 4,
                minimumVectorsPerWorkGroup: 4096, chunkedAccess: true, columnTile: 16, vectorWidth: 16,
                streamingStoreBytes: 32 << 20)
        case .gpu, .accelerator, .other:
            self.init(
                reductionWorkGroupSize: 256, elementwiseWorkGroupSize: 256, workGroupsPerComputeUnit: 8,
                minimumVectorsPerWorkGroup: 2048, chunkedAccess: false, columnTile: 1, vectorWidth: 4)
        }
    }
}
