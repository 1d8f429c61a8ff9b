import COpenCL
import Testing
@testable import NormCL

/// Device allocations are reused by size, within the pool's capacity.
@Suite("Buffer pool")
struct BufferPoolTests {
    @Test("a dropped buffer's memory serves the next allocation of its size, with new contents")
    func reuse() throws {
        let runtime = try #require(sharedRuntime)
        // An odd size no other test allocates, so concurrent tests cannot take it.
        let byteCount = 4 * 12_347
        var first: DeviceBuffer? = try DeviceBuffer(byteCount: byteCount, on: runtime)
        try first?.upload([Float](repeating: 7, count: 12_347))
        let handle = try #require(first?.handle)
        first = nil
        let second = try DeviceBuffer(byteCount: byteCount, on: runtime)
        #expect(second.handle == handle)
        try second.upload((0..<12_347).map(Float.init))
        #expect(try second.download(as: Float.self) == (0..<12_347).map(Float.init))
        let other = try DeviceBuffer(byteCount: byteCount + 4, on: runtime)
        #expect(other.handle != handle, "another size gets another allocation")
    }

    @Test("beyond its capacity the pool releases instead of keeping")
    func capacity() throws {
        let runtime = try #require(sharedRuntime)
        let pool = BufferPool(capacityBytes: 1000)
        func allocate(_ bytes: Int) throws -> cl_mem {
            var status: cl_int = CL_SUCCESS
            let memory = clCreateBuffer(runtime.context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &status)
            return try #require(memory)
        }
        pool.recycle(try allocate(600), byteCount: 600)
        pool.recycle(try allocate(600), byteCount: 600)  // over capacity: released
        #expect(pool.idleBytes == 600)
        let taken = try #require(pool.take(byteCount: 600))
        clReleaseMemObject(taken)
        #expect(pool.take(byteCount: 600) == nil)
        #expect(pool.idleBytes == 0)
    }
}
