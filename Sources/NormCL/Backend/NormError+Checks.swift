extension NormError {
    /// Throws unless `eps` is finite and non-negative.
    static func checkEps(_ eps: Float) throws(NormError) {
        guard eps.isFinite, eps >= 0 else {
            throw .invalidArgument(argument: "eps", reason: "must be finite and non-negative, got \(eps)")
        }
    }

    /// Throws unless `momentum` is nil (cumulative average) or lies in [0, 1].
    static func checkMomentum(_ momentum: Float?) throws(NormError) {
        if let momentum, !(momentum >= 0 && momentum <= 1) {
            throw .invalidArgument(argument: "momentum", reason: "must lie in [0, 1], got \(momentum)")
        }
    }
}
