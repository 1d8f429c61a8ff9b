#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization  // Atomic: the temporary-file counter and the one-time notice

/// The on-disk program cache: one file per program binary in a directory, so a later
/// process loads a program instead of compiling its source (a build costs 0.1–1 s on
/// PoCL; a load a fraction of that).
///
/// An entry's file name is the FNV-1a 64 of its key (`ProgramBinaryKey`) in hex, plus
/// `.bin`; its content is a `ProgramBinaryEntry`, which holds the full key, so a load
/// only returns a payload whose key matches byte for byte and whose checksum is right.
/// Anything else — missing, unreadable, truncated, corrupt, foreign — is a miss, and
/// the caller builds from source and stores the entry again, replacing it.
///
/// Writes are atomic: the entry goes to a temporary file in the same directory (named
/// with the process id and a counter, so processes and threads filling the cache at the
/// same time never share one), then `rename`s over the final name. A reader sees the old
/// entry or the new one, never half of one; two processes storing the same key both
/// succeed and the last rename wins, with identical contents. There is no `fsync`: an
/// entry that a power loss cut short is caught by its checksum and rebuilt.
///
/// The store never fails an op: a directory that cannot be created or written (a path
/// through a regular file, a read-only file system, a full disk) makes ``store(key:payload:)``
/// throw, and `ProgramCache` carries on with the program it built (reporting the first such
/// failure of the process once on standard error).
struct ProgramBinaryStore: Sendable {
    /// The directory the entries live in; created, with its parents, at the first store.
    let directory: String

    /// The outcome of a lookup.
    enum Lookup: Equatable {
        /// A valid entry for the key: the driver's program binary.
        case hit([UInt8])
        /// No entry under the key's file name (or none that can be opened).
        case missing
        /// An entry that is not valid for the key: why.
        case invalid(String)
    }

    /// Why a store failed: the call, the path and `errno`.
    struct Failure: Error, CustomStringConvertible {
        let call: String
        let path: String
        let code: Int32

        var description: String { "\(call)(\(path)): \(String(cString: strerror(code)))" }
    }

    /// The file an entry for `key` lives in.
    func path(forKey key: String) -> String {
        directory + "/" + FNV1a64.hex(FNV1a64.hash(key.utf8)) + ".bin"
    }

    /// The payload stored for `key`, if a valid entry for exactly that key is there.
    func load(key: String) -> Lookup {
        let path = path(forKey: key)
        let bytes: [UInt8]
        switch Self.readFile(path) {
        case .success(let read): bytes = read
        case .failure(let failure) where failure.code == ENOENT: return .missing
        case .failure(let failure): return .invalid("unreadable: \(failure)")
        }
        switch ProgramBinaryEntry.decode(bytes) {
        case .failure(let failure):
            return .invalid("\(failure)")
        case .success(let entry):
            guard entry.key.elementsEqual(key.utf8) else { return .invalid("written for another key") }
            guard !entry.payload.isEmpty else { return .invalid("empty binary") }
            return .hit(entry.payload)
        }
    }

    /// Writes the entry for `key` atomically, replacing any file of that name.
    func store(key: String, payload: [UInt8]) throws(Failure) {
        try Self.makeDirectories(directory)
        let path = path(forKey: key)
        let temporary = directory + "/.tmp-" + String(getpid()) + "-"
            + String(Self.temporaryCounter.add(1, ordering: .relaxed).newValue) + "-"
            + FNV1a64.hex(FNV1a64.hash(key.utf8))
        let bytes = ProgramBinaryEntry.encode(key: key, payload: payload)
        do throws(Failure) {
            try Self.writeFile(temporary, bytes)
            guard rename(temporary, path) == 0 else { throw Failure(call: "rename", path: path, code: errno) }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Numbers this process's temporary files (with the pid, unique among processes).
    private static let temporaryCounter = Atomic<UInt64>(0)

    /// `mkdir -p`: creates `path` and its missing parents; an existing directory is fine,
    /// anything else in the way (a regular file) is an error.
    static func makeDirectories(_ path: String) throws(Failure) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw Failure(call: "mkdir", path: path, code: ENOTDIR) }
            return
        }
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw Failure(call: "mkdir", path: prefix, code: errno)
            }
        }
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw Failure(call: "mkdir", path: path, code: ENOTDIR)
        }
    }

    /// The whole content of the regular file at `path`.
    static func readFile(_ path: String) -> Result<[UInt8], Failure> {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return .failure(Failure(call: "open", path: path, code: errno)) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return .failure(Failure(call: "fstat", path: path, code: errno)) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(Failure(call: "open", path: path, code: EISDIR)) }
        // Read to the end rather than trusting the size: another process may be replacing
        // the file (by rename, so this descriptor keeps one whole version of it).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(Failure(call: "read", path: path, code: errno))
            }
            if count == 0 { return .success(bytes) }
            bytes += chunk[..<count]
        }
    }

    /// Creates `path` (which must not exist) holding `bytes`.
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(Failure) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw Failure(call: "open", path: path, code: errno) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(descriptor)
                throw Failure(call: "write", path: path, code: code)
            }
            written += count
        }
        // close reports write-back errors of some file systems (NFS, quota).
        guard close(descriptor) == 0 else { throw Failure(call: "close", path: path, code: errno) }
    }

    /// Reports a failure of the disk cache on standard error, the first time in the
    /// process only (`NORMCL_QUIET` silences it): ops go on without the cache, and a
    /// line per program would flood a user's log.
    static func reportOnce(_ message: String) {
        guard !reported.exchange(true, ordering: .relaxed) else { return }
        if environment("NORMCL_QUIET") == nil {
            printToStandardError("NormCL: program cache: \(message); programs are compiled from source")
        }
    }

    private static let reported = Atomic<Bool>(false)
}
