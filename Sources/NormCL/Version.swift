/// NormCL's version, `NormCL.version`.
///
/// Part of the key of every program binary in the on-disk program cache (see
/// ``ProgramCacheConfiguration``), so a new release never loads binaries an older one
/// compiled. Raise it with every release.
public let version = "0.1.0"
