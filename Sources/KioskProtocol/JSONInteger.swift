import Foundation

/// A JSON integer as JSONSerialization hands it over: written without fraction or exponent
/// and within Int64. `1.0` and `1e3` arrive as doubles, `true` as a boolean: none is one.
public enum JSONInteger {
    /// The integer `v` holds; nil when it is not a JSON integer within Int64 (a string, a double,
    /// a boolean, a number beyond Int64, or nil).
    public static func value(_ v: Any?) -> Int64? {
        guard let n = v as? NSNumber, !(v is String) else { return nil }
        switch n.objCType.pointee {
        case 0x69, 0x6C, 0x71, 0x73: return n.int64Value   // i, l, q, s: signed integer types
        default: return nil                                  // d, f: double; c: boolean; Q: beyond Int64
        }
    }
}
