extension KernelArgument {
    /// `value`, a size or count, as a 32-bit (`uint`) kernel argument.
    ///
    /// Problems reject shapes whose sizes do not fit before any launch; this throws
    /// instead of trapping should a size slip past them.
    ///
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` naming the input when
    ///   `value` is negative or not below 2^32.
    static func count(_ value: Int) throws(NormError) -> KernelArgument {
        guard let value32 = UInt32(exactly: value) else {
            throw .invalidShape(argument: "input", reason: "size \(value) does not fit a 32-bit kernel argument")
        }
        return .uint(value32)
    }
}
