extension Array where Element == Int {
    /// The product of the dimensions, or nil when it overflows `Int`.
    var checkedProduct: Int? {
        var product = 1
        for dimension in self {
            let (result, overflow) = product.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            product = result
        }
        return product
    }
}
