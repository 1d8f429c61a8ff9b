/// The storage type of a tensor's elements. Arithmetic and statistics are float32.
public enum ElementType: String, Sendable, Hashable, CaseIterable {
    case float32

    /// Bytes per element in memory.
    public var byteCount: Int {
        switch self {
        case .float32: 4
        }
    }
}
