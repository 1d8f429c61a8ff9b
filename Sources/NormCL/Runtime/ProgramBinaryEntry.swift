/// The byte format of one entry of the on-disk program cache (see `ProgramBinaryStore`).
///
/// An entry is self-describing and self-checking, so that anything else found under an
/// entry's name — a file cut short by a full disk or a crash, bytes flipped on disk, an
/// older format, an entry written for another key whose file name hashes the same — is
/// recognised and rebuilt from source instead of being handed to the driver:
///
/// | bytes | field |
/// |---|---|
/// | 8 | magic `NORMCLPB` |
/// | 4 | format version (``formatVersion``), little-endian |
/// | 8 | key length `K`, little-endian |
/// | `K` | key text, UTF-8: everything the binary depends on (see `ProgramBinaryKey`) |
/// | 8 | payload length `P`, little-endian |
/// | `P` | payload: the driver's program binary (`CL_PROGRAM_BINARIES`) |
/// | 8 | FNV-1a 64 of every byte before it, little-endian |
enum ProgramBinaryEntry {
    static let magic: [UInt8] = Array("NORMCLPB".utf8)
    /// Raise it when the layout changes: older entries are then rebuilt, not misread.
    static let formatVersion: UInt32 = 1
    /// Magic, version, two lengths and the checksum: the size of an entry with an empty
    /// key and payload.
    static let overhead = 8 + 4 + 8 + 8 + 8

    /// Why bytes are not a valid entry.
    enum Failure: Error, Equatable, CustomStringConvertible {
        case truncated, badMagic, unsupportedVersion(UInt32), badLength, checksumMismatch

        var description: String {
            switch self {
            case .truncated: "truncated"
            case .badMagic: "not a NormCL program binary"
            case .unsupportedVersion(let version): "format version \(version), expected \(ProgramBinaryEntry.formatVersion)"
            case .badLength: "inconsistent lengths"
            case .checksumMismatch: "checksum mismatch"
            }
        }
    }

    /// The entry for `key` holding `payload`.
    static func encode(key: String, payload: [UInt8]) -> [UInt8] {
        let keyBytes = Array(key.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(overhead + keyBytes.count + payload.count)
        bytes += magic
        append(formatVersion, to: &bytes)
        append(UInt64(keyBytes.count), to: &bytes)
        bytes += keyBytes
        append(UInt64(payload.count), to: &bytes)
        bytes += payload
        let checksum = bytes.withUnsafeBytes { raw in
            var hasher = FNV1a64()
            hasher.combine(raw)
            return hasher.value
        }
        append(checksum, to: &bytes)
        return bytes
    }

    /// The key text (as UTF-8 bytes, compared byte for byte: `String`'s `==` would call
    /// canonically equivalent texts equal) and payload of a valid entry.
    static func decode(_ bytes: [UInt8]) -> Result<(key: [UInt8], payload: [UInt8]), Failure> {
        guard bytes.count >= overhead else { return .failure(bytes.starts(with: magic.prefix(bytes.count)) ? .truncated : .badMagic) }
        guard bytes.starts(with: magic) else { return .failure(.badMagic) }
        let stored = readInteger(UInt64.self, bytes, at: bytes.count - 8)
        let computed = bytes.withUnsafeBytes { raw in
            var hasher = FNV1a64()
            hasher.combine(UnsafeRawBufferPointer(rebasing: raw[..<(bytes.count - 8)]))
            return hasher.value
        }
        let version = readInteger(UInt32.self, bytes, at: 8)
        guard version == formatVersion else { return .failure(.unsupportedVersion(version)) }
        // Lengths are checked against what is there before any arithmetic, so no stored
        // length can overflow an `Int` or reach past the end.
        let keyLength = readInteger(UInt64.self, bytes, at: 12)
        guard keyLength <= UInt64(bytes.count - overhead) else { return .failure(stored == computed ? .badLength : .truncated) }
        let keyStart = 20
        let keyEnd = keyStart + Int(keyLength)
        let payloadLength = readInteger(UInt64.self, bytes, at: keyEnd)
        let payloadStart = keyEnd + 8
        guard payloadLength == UInt64(bytes.count - 8 - payloadStart) else {
            return .failure(stored == computed ? .badLength : .truncated)
        }
        guard stored == computed else { return .failure(.checksumMismatch) }
        return .success((Array(bytes[keyStart..<keyEnd]), Array(bytes[payloadStart..<(bytes.count - 8)])))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func readInteger<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        var value: T = 0
        for index in (0..<MemoryLayout<T>.size).reversed() {
            value = value << 8 | T(bytes[offset + index])
        }
        return value
    }
}
