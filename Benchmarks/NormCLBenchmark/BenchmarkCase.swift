import NormCL

/// One op on one shape, with what it costs in memory traffic.
struct BenchmarkCase: Sendable {
    enum Op: String, Sendable {
        case batchNormTraining = "BatchNorm train"
        case batchNormInference = "BatchNorm eval"
    }

    let op: Op
    let shape: [Int]
    var layout: TensorLayout = .channelsFirst

    var name: String { "\(op.rawValue) \(shapeText) \(layout == .channelsFirst ? "NCHW" : "NHWC") f32" }
    var shapeText: String { "(" + shape.map(String.init).joined(separator: ",") + ")" }
    var count: Int { shape.reduce(1, *) }
    var channels: Int { shape[1] }

    /// Ideal bytes moved, Triton's convention: the input read once and the output
    /// written once (2·numel·4 for a forward), plus the per-channel parameters and
    /// statistics read and written.
    var idealBytes: Int {
        let elementBytes = 2 * count * 4
        switch op {
        case .batchNormTraining: return elementBytes + channels * 4 * 8  // γ, β, running in/out, save mean/invstd
        case .batchNormInference: return elementBytes + channels * 4 * 4  // γ, β, running mean/var
        }
    }

    /// The suite: real shapes from CNNs (ResNet-50 stages) and a BatchNorm1d, in NCHW,
    /// and the 4-d ones in channels-last (NHWC) too.
    static func suite(quick: Bool) -> [BenchmarkCase] {
        let shapes: [[Int]] = quick ? [[8, 64, 28, 28], [64, 512]] : [[32, 64, 56, 56], [8, 128, 28, 28], [256, 2048]]
        let layouts: [(shape: [Int], layout: TensorLayout)] =
            shapes.map { ($0, .channelsFirst) } + shapes.filter { $0.count == 4 }.map { ($0, .channelsLast) }
        return layouts.flatMap { shape, layout in
            [
                BenchmarkCase(op: .batchNormTraining, shape: shape, layout: layout),
                BenchmarkCase(op: .batchNormInference, shape: shape, layout: layout),
            ]
        }
    }
}

/// The tensors of one case on one backend, and a closure that runs the op once.
struct PreparedCase {
    let run: () throws -> (output: Tensor, events: [KernelEvent])

    init(_ benchmarkCase: BenchmarkCase, input values: [Float], on backend: Backend) throws {
        let channels = benchmarkCase.channels
        let input = try Tensor(values, shape: benchmarkCase.shape, layout: benchmarkCase.layout, on: backend)
        let weight = try Tensor((0..<channels).map { 1 + Float($0 % 7) * 0.1 }, on: backend)
        let bias = try Tensor((0..<channels).map { Float($0 % 5) * 0.1 - 0.2 }, on: backend)
        let statistics = RunningStatistics(
            mean: try Tensor((0..<channels).map { Float($0 % 3) * 0.1 }, on: backend),
            variance: try Tensor((0..<channels).map { 1 + Float($0 % 4) * 0.25 }, on: backend))
        switch benchmarkCase.op {
        case .batchNormTraining:
            run = {
                // A fresh copy of the running statistics each call, so every call does the same work.
                var running: RunningStatistics? = statistics
                let out = try batchNorm(input, weight: weight, bias: bias, runningStatistics: &running, training: true)
                return (out.output, out.events)
            }
        case .batchNormInference:
            run = {
                var running: RunningStatistics? = statistics
                let out = try batchNorm(input, weight: weight, bias: bias, runningStatistics: &running, training: false)
                return (out.output, out.events)
            }
        }
    }
}
