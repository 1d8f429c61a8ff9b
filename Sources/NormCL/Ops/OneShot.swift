/// What the one-shot `[Float]` entry points (`batchNorm(_:shape:…)`, `layerNorm(_:shape:…)`,
/// …) share: `values` become a float32 channels-first tensor of `shape` and γ, β (when
/// given) tensors of `parameterShape` (their own length when nil) on `backend`
/// (``Backend/default`` when nil); `op` normalises them and its output comes back as
/// host values.
func oneShot(
    _ values: [Float], shape: [Int], weight: [Float]?, bias: [Float]?, parameterShape: [Int]? = nil,
    on backend: Backend?, _ op: (_ input: Tensor, _ weight: Tensor?, _ bias: Tensor?) throws -> Tensor
) throws -> [Float] {
    let backend = try backend ?? Backend.default
    func parameter(_ values: [Float]?) throws -> Tensor? {
        try values.map { try Tensor($0, shape: parameterShape ?? [$0.count], on: backend) }
    }
    return try op(try Tensor(values, shape: shape, on: backend), try parameter(weight), try parameter(bias)).toArray()
}
