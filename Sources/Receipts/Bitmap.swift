/// A 1-bit image, row-major, `true` for a black (printed) dot.
public struct Bitmap: Sendable, Equatable {
    /// Dots per row.
    public let width: Int
    /// Rows.
    public let height: Int
    /// `width × height` dots, row by row; `true` is black.
    public private(set) var pixels: [Bool]

    /// A white bitmap.
    public init(width: Int, height: Int) {
        precondition(width >= 0 && height >= 0)
        self.width = width
        self.height = height
        pixels = [Bool](repeating: false, count: width * height)
    }

    /// A bitmap from its dots, row by row.
    public init(width: Int, height: Int, pixels: [Bool]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height, "pixel count must be width × height")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The dot at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> Bool {
        get {
            precondition(x >= 0 && x < width && y >= 0 && y < height)
            return pixels[y * width + x]
        }
        set {
            precondition(x >= 0 && x < width && y >= 0 && y < height)
            pixels[y * width + x] = newValue
        }
    }

    /// Blackens a rectangle (clipped to the bitmap).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int) {
        let x0 = max(0, x), x1 = min(width, x + w), y0 = max(0, y), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for row in y0..<y1 {
            for column in x0..<x1 { pixels[row * width + column] = true }
        }
    }

    /// Copies `other` in with its top-left corner at (`x`, `y`), black dots only (clipped).
    public mutating func draw(_ other: Bitmap, x: Int, y: Int) {
        for row in 0..<other.height where y + row >= 0 && y + row < height {
            for column in 0..<other.width where x + column >= 0 && x + column < width && other.pixels[row * other.width + column] {
                pixels[(y + row) * width + x + column] = true
            }
        }
    }
}
