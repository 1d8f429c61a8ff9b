#if canImport(Glibc)
import Glibc
#endif
@testable import NormCL

// Files and processes for the suites that write files and start child processes
// (program cache, process exit).

/// Removes `path` and, for a folder, everything under it (links are not followed).
func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if info.st_mode & S_IFMT == S_IFDIR, let directory = opendir(path) {
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(directory)
        for name in names { removeTree(path + "/" + name) }
    }
    remove(path)
}

/// The text of the file at `path` ("" when it cannot be read): the library's own
/// whole-file read.
func readText(_ path: String) -> String {
    String(decoding: (try? ProgramBinaryStore.readFile(path).get()) ?? [], as: UTF8.self)
}

/// Starts `path` with `arguments`, stdout and stderr to `log`, and `environment`
/// (`NAME=value` strings; nil: this process's environment).
func spawnProcess(_ path: String, _ arguments: [String], log: String, environment: [String]? = nil) -> pid_t? {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid = pid_t()
    guard let environment else {
        return posix_spawn(&pid, path, &actions, nil, &argv, environ) == 0 ? pid : nil
    }
    var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer { for pointer in envp { free(pointer) } }
    return posix_spawn(&pid, path, &actions, nil, &argv, &envp) == 0 ? pid : nil
}
