// LayerNorm forward of a small tensor on the default backend (OpenCL when there is a
// device, else the CPU reference) and on the reference path, each compared with the
// formula computed here; on OpenCL also through a second runtime adopting the first one's
// context and queue (the consumer names OpenCL's C types: `import COpenCL` works for it).
// Exits non-zero on a mismatch or an error.
import COpenCL
import NormCL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let rows = 3, width = 8
let values: [Float] = (0..<rows * width).map { i in Float((i * 7) % 11) - 4.5 + Float(i / width) * 100 }
let gamma: [Float] = (0..<width).map { 0.5 + Float($0) * 0.25 }
let beta: [Float] = (0..<width).map { Float($0) - 3 }
let eps: Float = 1e-5

/// y = (x − mean) / sqrt(var + eps) · γ + β per row, var biased, in Double.
func expectedLayerNorm() -> [Float] {
    var out: [Float] = []
    for r in 0..<rows {
        let row = values[r * width ..< (r + 1) * width].map(Double.init)
        let mean = row.reduce(0, +) / Double(width)
        let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
        let invstd = 1 / (variance + Double(eps)).squareRoot()
        for (c, x) in row.enumerated() { out.append(Float((x - mean) * invstd * Double(gamma[c]) + Double(beta[c]))) }
    }
    return out
}

func check(on backend: Backend) throws -> Bool {
    let input = try Tensor(values, shape: [rows, width], on: backend)
    let weight = try Tensor(gamma, shape: [width], on: backend)
    let bias = try Tensor(beta, shape: [width], on: backend)
    let result = try layerNorm(input, normalizedShape: [width], weight: weight, bias: bias, eps: eps)
    let actual: [Float] = try result.output.toArray()
    let expected = expectedLayerNorm()
    let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? .infinity
    let ok = actual.count == expected.count && worst <= 1e-4
    print("LayerNorm \(rows)x\(width) on \(backend.name): max |error| \(worst) — \(ok ? "ok" : "MISMATCH")")
    if !ok { print("  expected \(expected)\n  actual   \(actual)") }
    return ok
}

do {
    let backend = try Backend.default
    let defaultOK = try check(on: backend)
    let referenceOK = try check(on: .reference)
    var adoptedOK = true
    if let runtime = backend.runtime {
        let context: cl_context = runtime.contextHandle
        let adopted = try OpenCLRuntime(adopting: context, queue: runtime.queueHandle, device: runtime.deviceHandle)
        adoptedOK = try check(on: .openCL(adopted))
    }
    exit(defaultOK && referenceOK && adoptedOK ? 0 : 1)
} catch {
    print("error: \(error)")
    exit(1)
}
