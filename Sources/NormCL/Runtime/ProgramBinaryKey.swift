/// The key of a program binary in the on-disk cache: a text naming everything the
/// compiled binary depends on.
///
/// A binary is only valid for exactly the text it was compiled from, with the same
/// options, by the same driver for the same device; and NormCL's own version is in it, so
/// an upgrade never loads what an older release compiled. The full source text (the shared
/// library and the op's file, as `CompiledProgram.sourceText(of:)` gives it to the
/// compiler) is part of the key, not only its hash: the entry stores the key and a load
/// compares it byte for byte, so neither a changed kernel nor a hash collision can load
/// the wrong binary. The entry's file name is the FNV-1a 64 of this text.
enum ProgramBinaryKey {
    static func text(sourceName: String, sourceText: String, options: String, device: OpenCLDevice) -> String {
        """
        NormCL program binary
        normcl: \(version)
        platform: \(device.platformName) | \(device.platformVersion)
        device: \(device.name) | \(device.vendor)
        driver: \(device.driverVersion)
        options: \(options)
        source: \(sourceName), \(sourceText.utf8.count) bytes
        \(sourceText)
        """
    }
}
