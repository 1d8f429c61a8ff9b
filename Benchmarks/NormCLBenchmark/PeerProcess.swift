import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// The PyTorch peer as one process for the whole run (`pytorch_norms.py --serve`), driven
/// case by case so that its timed iterations alternate with NormCL's: both then see the
/// same machine, where timing the peer after NormCL's cases let other load (a build, a CI
/// run) land on one side only.
///
/// The protocol is one JSON object per line (the script's docstring has it in full): the
/// script first writes `{"peer", "allocator"}`; then `{"prepare": {case}, "warmup": N}`
/// gets `{"ok": true}`, `{"skipped": why}` or `{"error": why}`, and `{"time": K}` gets
/// `{"ms": [K wall times]}` or `{"error": why}`. Closing its stdin ends it.
///
/// Nothing here fails the benchmark: a missing script, python3 or torch, or a peer that
/// dies mid-run, only leaves the peer's figures out (and the report says why).
final class PeerProcess {
    /// What the peer is, e.g. "PyTorch 2.13.0+cpu CPU, 2 threads".
    let peer: String
    /// How the peer's allocator was set for its own process (the script's `keep_freed_memory`).
    let allocator: String
    /// Why the peer stopped answering, once it has; every later request then fails at once.
    private(set) var lost: PeerUnavailable?

    private var pid: pid_t
    /// Our end of the peer's stdin and of its stdout.
    private var requests: Int32
    private var replies: UnsafeMutablePointer<FILE>?
    /// SIGPIPE's disposition before the peer started: while it runs a write to a peer that
    /// has died must fail with EPIPE (the column then says so), not kill the benchmark.
    private let savedSIGPIPE: __sighandler_t?

    private struct Reply: Decodable {
        let peer: String?
        let allocator: String?
        let ok: Bool?
        let skipped: String?
        let error: String?
        let ms: [Double]?
    }

    private init(pid: pid_t, requests: Int32, replies: UnsafeMutablePointer<FILE>, hello: Reply) {
        self.pid = pid
        self.requests = requests
        self.replies = replies
        peer = hello.peer ?? "PyTorch"
        allocator = hello.allocator ?? "allocator not reported"
        savedSIGPIPE = signal(SIGPIPE, SIG_IGN)
    }

    deinit { finish() }

    /// Starts `python3 script --serve` and reads its first line; why not, when it cannot
    /// (the script exits with status 3 when torch does not import).
    static func start(script: String, device: String, threads: Int) -> Result<PeerProcess, PeerUnavailable> {
        guard access(script, R_OK) == 0 else { return .failure(PeerUnavailable("no peer script at \(script)")) }
        // Both pipes close on exec (so the peer holds no stray copy of our ends, and sees
        // end of input when we close ours); dup2 onto its 0 and 1 clears that for those.
        var toPeer: [Int32] = [-1, -1], fromPeer: [Int32] = [-1, -1]
        guard pipe(&toPeer) == 0, pipe(&fromPeer) == 0 else {
            for fd in toPeer + fromPeer where fd >= 0 { close(fd) }
            return .failure(PeerUnavailable("pipe failed (errno \(errno))"))
        }
        for fd in toPeer + fromPeer { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toPeer[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromPeer[1], 1)
        let arguments = ["python3", script, "--serve", "--device", device, "--threads", String(threads)]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ) == 0
        close(toPeer[0])
        close(fromPeer[1])
        guard spawned, let replies = fdopen(fromPeer[0], "r") else {
            close(toPeer[1])
            close(fromPeer[0])
            return .failure(PeerUnavailable("python3 not found"))
        }
        guard let line = readLine(replies), let hello = try? JSONDecoder().decode(Reply.self, from: Data(line.utf8)),
            hello.peer != nil
        else {
            close(toPeer[1])
            fclose(replies)
            let status = wait(for: pid)
            return .failure(
                PeerUnavailable(
                    status == 3 ? "PyTorch is not installed (python3 cannot import torch)"
                        : "the peer script did not start (exit status \(status))"))
        }
        return .success(PeerProcess(pid: pid, requests: toPeer[1], replies: replies, hello: hello))
    }

    /// Makes the peer's tensors for `benchmarkCase` and runs `warmup` untimed calls; why
    /// the peer has no figure for it otherwise (e.g. half storage on the CPU).
    func prepare(_ benchmarkCase: BenchmarkCase, warmup: Int) -> PeerUnavailable? {
        let c = benchmarkCase
        let spec =
            "{\"name\": \(Report.jsonString(c.name)), \"op\": \(Report.jsonString(c.op)), "
            + "\"shape\": [\(c.shape.map(String.init).joined(separator: ", "))], "
            + "\"layout\": \"\(c.layout == .channelsFirst ? "NCHW" : "NHWC")\", "
            + "\"dtype\": \"\(c.elementType == .float32 ? "f32" : "f16")\"}"
        switch request("{\"prepare\": \(spec), \"warmup\": \(warmup)}") {
        case .success(let reply) where reply.ok == true: return nil
        case .success(let reply): return PeerUnavailable(reply.skipped.map { "skipped: \($0)" } ?? reply.error ?? "no answer")
        case .failure(let reason): return reason
        }
    }

    /// `iterations` timed calls of the prepared case, wall time each, ms.
    func time(iterations: Int) -> Result<[Double], PeerUnavailable> {
        request("{\"time\": \(iterations)}").flatMap { reply in
            guard let ms = reply.ms, ms.count == iterations else { return .failure(PeerUnavailable(reply.error ?? "no times")) }
            return .success(ms)
        }
    }

    /// Closes the peer's stdin (it exits on end of input) and waits for it: its exit
    /// status (nil when it was already finished).
    @discardableResult
    func finish() -> Int32? {
        guard pid > 0 else { return nil }
        close(requests)
        fclose(replies)
        replies = nil
        let status = Self.wait(for: pid)
        pid = 0
        signal(SIGPIPE, savedSIGPIPE)
        return status
    }

    /// One request line and its reply; a peer that cannot be written to or ends its
    /// output is lost for the rest of the run.
    private func request(_ line: String) -> Result<Reply, PeerUnavailable> {
        if let lost { return .failure(lost) }
        var text = line + "\n"
        let written = text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(requests, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        if written, let replies, let answer = Self.readLine(replies),
            let reply = try? JSONDecoder().decode(Reply.self, from: Data(answer.utf8))
        {
            return .success(reply)
        }
        let status = finish()
        let reason = PeerUnavailable("the peer stopped answering (exit status \(status.map(String.init) ?? "unknown"))")
        lost = reason
        return .failure(reason)
    }

    /// The next line from `file` without its newline, or nil at end of file.
    private static func readLine(_ file: UnsafeMutablePointer<FILE>) -> String? {
        var buffer: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(buffer) }
        guard getline(&buffer, &capacity, file) > 0, let buffer else { return nil }
        var line = String(cString: buffer)
        if line.hasSuffix("\n") { line.removeLast() }
        return line
    }

    /// Waits for `pid`: its exit status, or 128 + the signal that ended it.
    private static func wait(for pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS are macros that do not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
