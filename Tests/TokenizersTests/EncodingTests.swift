import XCTest
@testable import Tokenizers

final class EncodingTests: XCTestCase {
    func testEmptyEncoding() {
        let e = Encoding()
        XCTAssertTrue(e.ids.isEmpty && e.tokens.isEmpty && e.offsets.isEmpty)
    }
}
