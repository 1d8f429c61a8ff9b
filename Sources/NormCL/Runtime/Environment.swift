#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The value of an environment variable, or nil.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// Writes a line to standard error (the library has no Foundation).
func printToStandardError(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    // write(2) rather than the C `stderr` global, which Swift 6 treats as shared mutable state.
    _ = text.withCString { write(2, $0, strlen($0)) }
}
