/// The 64-bit FNV-1a hash (Fowler–Noll–Vo): names and checksums the entries of the
/// on-disk program cache.
///
/// Not cryptographic, and it need not be: a file name that two keys share, or a
/// corrupted entry whose checksum happens to match, is still caught by comparing the full
/// key text stored in the entry (see `ProgramBinaryEntry`), and a binary that fails to
/// load falls back to a source build. Written here because the library has no Foundation
/// and takes no dependency for twelve lines.
struct FNV1a64 {
    static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    private(set) var value = offsetBasis

    /// Folds `bytes` into the hash.
    mutating func combine<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        var hash = value
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* Self.prime
        }
        value = hash
    }

    /// Folds a contiguous buffer into the hash (the fast path for large payloads).
    mutating func combine(_ bytes: UnsafeRawBufferPointer) {
        var hash = value
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* Self.prime
        }
        value = hash
    }

    /// The hash of `bytes`.
    static func hash<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt64 {
        var hasher = FNV1a64()
        hasher.combine(bytes)
        return hasher.value
    }

    /// `value` as 16 lowercase hex digits.
    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
