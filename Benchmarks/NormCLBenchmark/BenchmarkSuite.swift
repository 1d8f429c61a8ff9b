extension BenchmarkCase {
    /// Every op's cases (each op's list lives in `Cases/<Op>Cases.swift`).
    static func suite(quick: Bool) -> [BenchmarkCase] {
        batchNormCases(quick: quick) + layerNormCases(quick: quick) + groupNormCases(quick: quick)
            + switchableNormCases(quick: quick) + modelShapeCases(quick: quick) + fusedCases(quick: quick)
            + fusedChannelCases(quick: quick)
    }

    /// Shapes from real models that are not powers of two, and small batches, so that the
    /// suite does not only show the sizes kernels like best: a ViT-B/16 block at batch 8
    /// (197 tokens of 768), LLaMA-13B's hidden size (5120) over 2048 tokens, one decode
    /// step of a batch of 8 (RMSNorm over 8 rows of 4096), a ResNet stem at batch 2 (64
    /// channels of 112×112, NHWC too), ResNet-50's third stage at batch 4 (1024 channels of
    /// 14×14), and Stable Diffusion's first U-Net GroupNorm at batch 1 (320 channels of
    /// 64×64, NHWC). Float32, forward and backward (quick mode: two small ones).
    static func modelShapeCases(quick: Bool) -> [BenchmarkCase] {
        if quick {
            return [layerNorm(shape: [197, 768], elementType: .float32), rmsNorm(shape: [8, 4096], elementType: .float32)]
        }
        return [
            layerNorm(shape: [1576, 768], elementType: .float32),
            layerNormBackward(shape: [1576, 768], elementType: .float32),
            rmsNorm(shape: [2048, 5120], elementType: .float32),
            rmsNormBackward(shape: [2048, 5120], elementType: .float32),
            rmsNorm(shape: [8, 4096], elementType: .float32),
            batchNorm(training: true, shape: [2, 64, 112, 112], layout: .channelsFirst, elementType: .float32),
            batchNorm(training: true, shape: [2, 64, 112, 112], layout: .channelsLast, elementType: .float32),
            batchNormBackward(training: true, shape: [2, 64, 112, 112], layout: .channelsLast, elementType: .float32),
            batchNorm(training: true, shape: [4, 1024, 14, 14], layout: .channelsFirst, elementType: .float32),
            batchNormBackward(training: true, shape: [4, 1024, 14, 14], layout: .channelsFirst, elementType: .float32),
            groupNorm(shape: [1, 320, 64, 64], groups: 32, layout: .channelsLast, elementType: .float32),
            groupNormBackward(shape: [1, 320, 64, 64], groups: 32, layout: .channelsLast, elementType: .float32),
        ]
    }
}
