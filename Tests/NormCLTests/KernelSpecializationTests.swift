import Testing

@testable import NormCL

/// ``KernelSpecialization`` is the program cache's key: equal option lists must be equal
/// keys with equal hashes, and any other list another key.
@Suite("Kernel specialisation keys")
struct KernelSpecializationTests {
    static func base() -> KernelSpecialization {
        KernelSpecialization(elementType: .float32, chunkedAccess: true, wideIndices: false)
    }

    @Test("equal options: equal keys, equal hashes, the same command line")
    func equalOptions() {
        var a = Self.base(), b = Self.base()
        a.define("VEC", 16)
        a.flag("HAS_WEIGHT", true)
        b.define("VEC", 16)
        b.flag("HAS_WEIGHT", true)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a.text == b.text)
        #expect(a.text.hasSuffix("-D VEC=16 -D HAS_WEIGHT=1"))
        #expect(Set([a, b]).count == 1)
    }

    @Test("a different value, name, order, element type or split of a text: another key")
    func differentOptions() {
        var vec16 = Self.base(), vec4 = Self.base(), renamed = Self.base()
        vec16.define("VEC", 16)
        vec4.define("VEC", 4)
        renamed.define("CVEC", 16)
        var ab = Self.base(), ba = Self.base()
        ab.define("A", 1)
        ab.define("B", 2)
        ba.define("B", 2)
        ba.define("A", 1)
        var half = KernelSpecialization(elementType: .float16, chunkedAccess: true, wideIndices: false)
        half.define("VEC", 16)
        let keys = [
            vec16, vec4, renamed, ab, ba, half, KernelSpecialization(text: "-D AB -D C"),
            KernelSpecialization(text: "-D A -D BC"),
        ]
        #expect(Set(keys).count == keys.count)
        #expect(Set(keys.map(\.hashValue)).count == keys.count)
    }
}
