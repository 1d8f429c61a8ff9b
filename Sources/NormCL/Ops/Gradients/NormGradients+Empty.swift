extension NormGradients {
    /// The gradients of an empty input, as PyTorch gives them: dx empty (the input's
    /// shape, layout and element type), dγ and dβ zeros of the parameters' shape (no
    /// value contributes to their sums). No kernel runs.
    static func empty(
        like input: Tensor, parameterShape: [Int], mask: NormGradientMask, hasBias: Bool = true
    ) throws -> NormGradients {
        let backend = input.backend
        return NormGradients(
            input: mask.contains(.input) ? try Tensor(zerosLike: input) : nil,
            weight: mask.contains(.weight) ? try Tensor(repeating: 0, shape: parameterShape, on: backend) : nil,
            bias: hasBias && mask.contains(.bias) ? try Tensor(repeating: 0, shape: parameterShape, on: backend) : nil,
            events: [])
    }
}
