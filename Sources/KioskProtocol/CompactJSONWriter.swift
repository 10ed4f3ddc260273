import Foundation

extension CompactJSON {
    /// The `Encoder` that builds a `Node`. Containers asked of it again add to the same object
    /// or array (a record's common fields and its kind's fields share one flat object).
    final class Writer: Encoder {
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        /// What was encoded; `placed` puts it in its parent (a super encoder's value).
        var node: Node? { didSet { if let node { placed?(node) } } }
        var placed: ((Node) -> Void)?

        init(codingPath: [any CodingKey], placed: ((Node) -> Void)? = nil) {
            self.codingPath = codingPath
            self.placed = placed
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if case .object(let members)? = node { return KeyedEncodingContainer(Keyed(members: members, codingPath: codingPath)) }
            let members = Members()
            node = .object(members)
            return KeyedEncodingContainer(Keyed(members: members, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            if case .array(let elements)? = node { return Unkeyed(elements: elements, codingPath: codingPath) }
            let elements = Elements()
            node = .array(elements)
            return Unkeyed(elements: elements, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer { Single(writer: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let members: Members
        let codingPath: [any CodingKey]

        func encodeNil(forKey key: Key) throws { members.set(key.stringValue, .null) }
        func encode(_ value: Bool, forKey key: Key) throws { members.set(key.stringValue, .bool(value)) }
        func encode(_ value: String, forKey key: Key) throws { members.set(key.stringValue, .string(value)) }
        func encode(_ value: Double, forKey key: Key) throws { throw CompactJSON.unsupported(value, codingPath + [key]) }
        func encode(_ value: Float, forKey key: Key) throws { throw CompactJSON.unsupported(value, codingPath + [key]) }
        func encode(_ value: Int, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: Int8, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: Int16, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: Int32, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: Int64, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt8, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt16, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt32, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt64, forKey key: Key) throws { members.set(key.stringValue, CompactJSON.Node.integer(value)) }
        func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            members.set(key.stringValue, try CompactJSON.node(value, at: codingPath + [key]))
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            let nested = Members()
            members.set(key.stringValue, .object(nested))
            return KeyedEncodingContainer(Keyed<NestedKey>(members: nested, codingPath: codingPath + [key]))
        }

        func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let nested = Elements()
            members.set(key.stringValue, .array(nested))
            return Unkeyed(elements: nested, codingPath: codingPath + [key])
        }

        func superEncoder() -> any Encoder { superEncoder(named: "super") }
        func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }
        private func superEncoder(named name: String) -> any Encoder {
            let members = self.members
            return Writer(codingPath: codingPath) { members.set(name, $0) }
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let elements: Elements
        let codingPath: [any CodingKey]
        var count: Int { elements.items.count }

        private struct Index: CodingKey {
            var stringValue: String { "Index \(intValue!)" }
            var intValue: Int?
            init(_ i: Int) { intValue = i }
            init?(stringValue: String) { nil }
            init?(intValue: Int) { self.intValue = intValue }
        }

        func encodeNil() throws { elements.items.append(.null) }
        func encode(_ value: Bool) throws { elements.items.append(.bool(value)) }
        func encode(_ value: String) throws { elements.items.append(.string(value)) }
        func encode(_ value: Double) throws { throw CompactJSON.unsupported(value, codingPath + [Index(count)]) }
        func encode(_ value: Float) throws { throw CompactJSON.unsupported(value, codingPath + [Index(count)]) }
        func encode(_ value: Int) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: Int8) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: Int16) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: Int32) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: Int64) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt8) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt16) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt32) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode(_ value: UInt64) throws { elements.items.append(CompactJSON.Node.integer(value)) }
        func encode<T: Encodable>(_ value: T) throws { elements.items.append(try CompactJSON.node(value, at: codingPath + [Index(count)])) }

        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let nested = Members()
            let path = codingPath + [Index(count)]
            elements.items.append(.object(nested))
            return KeyedEncodingContainer(Keyed<NestedKey>(members: nested, codingPath: path))
        }

        func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let nested = Elements()
            let path = codingPath + [Index(count)]
            elements.items.append(.array(nested))
            return Unkeyed(elements: nested, codingPath: path)
        }

        func superEncoder() -> any Encoder {
            let elements = self.elements
            let i = elements.items.count
            elements.items.append(.null)
            return Writer(codingPath: codingPath + [Index(i)]) { elements.items[i] = $0 }
        }
    }

    struct Single: SingleValueEncodingContainer {
        let writer: Writer
        var codingPath: [any CodingKey] { writer.codingPath }

        func encodeNil() throws { writer.node = .null }
        func encode(_ value: Bool) throws { writer.node = .bool(value) }
        func encode(_ value: String) throws { writer.node = .string(value) }
        func encode(_ value: Double) throws { throw CompactJSON.unsupported(value, codingPath) }
        func encode(_ value: Float) throws { throw CompactJSON.unsupported(value, codingPath) }
        func encode(_ value: Int) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: Int8) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: Int16) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: Int32) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: Int64) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: UInt) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: UInt8) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: UInt16) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: UInt32) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode(_ value: UInt64) throws { writer.node = CompactJSON.Node.integer(value) }
        func encode<T: Encodable>(_ value: T) throws { writer.node = try CompactJSON.node(value, at: codingPath) }
    }
}
