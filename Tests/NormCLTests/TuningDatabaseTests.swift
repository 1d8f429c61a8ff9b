import Testing
@testable import NormCL

/// The tuning database (Sources/NormCL/Runtime/TuningDatabase.swift): its entries are
/// launchable, one per device, found by name and platform; a runtime made with an
/// explicit tuning uses it, and ops under a tuner's unusual values still match the
/// reference.
@Suite("Tuning database")
struct TuningDatabaseTests {
    @Test("every entry is within the ranges NORMCL_TUNING accepts, one per device and platform")
    func entriesAreSane() {
        var seen = Set<String>()
        for entry in TuningDatabase.entries {
            let t = entry.tuning
            #expect(t.reductionWorkGroupSize > 0 && t.reductionWorkGroupSize & (t.reductionWorkGroupSize - 1) == 0)
            #expect((1...4096).contains(t.elementwiseWorkGroupSize) && (1...1024).contains(t.workGroupsPerComputeUnit))
            #expect((1...64).contains(t.columnTile) && t.minimumVectorsPerWorkGroup > 0)
            #expect(!entry.measured.isEmpty && !entry.driverVersion.isEmpty)
            #expect(seen.insert(entry.deviceName + "\u{0}" + entry.platformName).inserted, "two entries for \(entry.deviceName)")
        }
    }

    @Test("lookup by device and platform name; another device gets its kind's defaults")
    func lookup() throws {
        let first = try #require(TuningDatabase.entries.first)
        #expect(TuningDatabase.entry(deviceName: first.deviceName, platformName: first.platformName)?.tuning == first.tuning)
        #expect(TuningDatabase.entry(deviceName: first.deviceName, platformName: "Another Platform") == nil)
        #expect(TuningDatabase.entry(deviceName: "no such device", platformName: first.platformName) == nil)
        if let device = sharedRuntime?.device {
            let expected = TuningDatabase.entry(for: device)?.tuning ?? DeviceTuning(defaultsFor: device.kind)
            #expect(DeviceTuning(for: device) == expected)
        }
    }

    @Test("a runtime made with a tuning uses it, and results still match the reference", .enabled(if: hasOpenCL))
    func explicitTuning() throws {
        let device = try #require(sharedRuntime).device
        let tuning = DeviceTuning(
            reductionWorkGroupSize: 8, elementwiseWorkGroupSize: 128, workGroupsPerComputeUnit: 1,
            minimumVectorsPerWorkGroup: 1024, chunkedAccess: false, columnTile: 3)
        let runtime = try OpenCLRuntime(device: device, tuning: tuning)
        #expect(runtime.tuning == tuning)
        var rng = SeededGenerator(seed: 4)
        let values = rng.normals(6 * 20 * 33, offset: 2)
        for layout in TensorLayout.allCases {
            let x = try Tensor(values, shape: [6, 20, 33], layout: layout, on: .openCL(runtime))
            let reference = try batchNorm(try Tensor(values, shape: [6, 20, 33], layout: layout, on: .reference))
            expectClose(
                try batchNorm(x).output.toArray(), try reference.output.toArray(), "BatchNorm \(layout)", relative: 1e-5,
                absolute: 1e-5)
        }
    }
}
