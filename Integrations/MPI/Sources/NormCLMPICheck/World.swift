import CMPI

/// The check's own bookkeeping over `MPI_COMM_WORLD` (results, pass flags, output):
/// apart from the exchanges under test, which run on their own duplicate communicators.
/// Errors here are MPI's default, fatal.
enum World {
    static var communicator: MPI_Comm { normcl_mpi_comm_world() }

    /// Element-wise reduction of `values` over every rank, the result on every rank.
    static func allReduce(_ values: [Double], _ op: MPI_Op) -> [Double] {
        var result = [Double](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { send in
            result.withUnsafeMutableBufferPointer { receive in
                _ = MPI_Allreduce(
                    send.baseAddress, receive.baseAddress, Int32(values.count), normcl_mpi_double(), op, communicator)
            }
        }
        return result
    }

    static func allMax(_ values: [Double]) -> [Double] { allReduce(values, normcl_mpi_max()) }

    /// Whether `flag` holds on every rank (`MPI_Allreduce` with `MPI_MIN`).
    static func all(_ flag: Bool) -> Bool {
        var local: Int32 = flag ? 1 : 0
        var global: Int32 = 0
        _ = MPI_Allreduce(&local, &global, 1, normcl_mpi_int(), normcl_mpi_min(), communicator)
        return global == 1
    }

    static func barrier() { _ = MPI_Barrier(communicator) }

    /// Every rank's `line`, in rank order, on rank 0 (empty elsewhere); lines longer
    /// than `width` bytes are cut.
    static func gatherLines(_ line: String, width: Int = 600) -> [String] {
        var bytes = Array(line.utf8.prefix(width)).map { CChar(bitPattern: $0) }
        bytes += [CChar](repeating: 0, count: width - bytes.count)
        let size = World.size
        var all = [CChar](repeating: 0, count: width * size)
        _ = MPI_Gather(&bytes, Int32(width), normcl_mpi_char(), &all, Int32(width), normcl_mpi_char(), 0, communicator)
        guard rank == 0 else { return [] }
        return (0..<size).map { r in
            let slice = all[(r * width)..<((r + 1) * width)].prefix { $0 != 0 }
            return String(decoding: slice.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    static var rank: Int {
        var rank: Int32 = 0
        _ = MPI_Comm_rank(communicator, &rank)
        return Int(rank)
    }

    static var size: Int {
        var size: Int32 = 0
        _ = MPI_Comm_size(communicator, &size)
        return Int(size)
    }
}
