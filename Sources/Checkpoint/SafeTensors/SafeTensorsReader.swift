/// Reads a safetensors file (8-byte LE header length, JSON header, data buffer) into views over the
/// mapped bytes, applying every validation rule the reference implementation enforces.
public enum SafeTensorsReader {
    /// The reference implementation's bound on the header length.
    public static let maxHeaderLength = 100_000_000

    public struct Parsed: Sendable {
        public var tensors: [TensorView]  // in header order
        public var metadata: [(String, String)]
    }

    public static func read(_ region: ByteRegion, file: String) throws -> Parsed {
        let bytes = region.bytes
        guard bytes.count >= 8 else {
            throw DebertaError(.malformedFile, file: file, "not a safetensors file: \(bytes.count) bytes, a safetensors file has at least 8")
        }
        let n64 = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard n64 <= UInt64(maxHeaderLength) else {
            throw DebertaError(.malformedFile, file: file, "safetensors header length \(n64) exceeds the limit of \(maxHeaderLength) bytes")
        }
        let headerLength = Int(n64)
        guard headerLength <= bytes.count - 8 else {
            throw DebertaError(.malformedFile, file: file, "safetensors header of \(headerLength) bytes runs past the end of the \(bytes.count)-byte file (truncated?)")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8 ..< 8 + headerLength])
        let header: JSONValue
        do {
            header = try JSONParser.parse(headerBytes)
        } catch {
            if let e = error as? JSONParseError, e.reason.hasPrefix("duplicate key") {
                throw DebertaError(.malformedFile, file: file, "safetensors header names a tensor twice: \(e.reason)")
            }
            throw DebertaError(.malformedFile, file: file, "safetensors header is not valid JSON: \(error)")
        }
        guard case let .object(members) = header else {
            throw DebertaError(.malformedFile, file: file, "safetensors header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart

        var metadata: [(String, String)] = []
        struct Entry { var name: String; var dtype: DType; var shape: [Int]; var begin: Int; var end: Int }
        var entries: [Entry] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                guard case let .object(kv) = value else {
                    throw DebertaError(.malformedFile, file: file, "__metadata__ must be an object of strings")
                }
                for (k, v) in kv {
                    guard let s = v.stringValue else {
                        throw DebertaError(.malformedFile, file: file, "__metadata__ value for '\(k)' is not a string")
                    }
                    metadata.append((k, s))
                }
                continue
            }
            guard case .object = value else {
                throw DebertaError(.tensor, file: file, tensor: name, "header entry is not an object")
            }
            guard let dtypeName = value["dtype"]?.stringValue else {
                throw DebertaError(.tensor, file: file, tensor: name, "missing or non-string 'dtype'")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw DebertaError(.unsupported, file: file, tensor: name, "unsupported dtype '\(dtypeName)' (supported: \(DType.allCases.map(\.rawValue).joined(separator: " ")))")
            }
            guard let shapeValues = value["shape"]?.arrayValue else {
                throw DebertaError(.tensor, file: file, tensor: name, "missing or non-array 'shape'")
            }
            guard shapeValues.count <= CheckpointLimits.maxTensorDimensions else {
                throw DebertaError(.limit, file: file, tensor: name, "shape has \(shapeValues.count) dimensions, more than the limit of \(CheckpointLimits.maxTensorDimensions)")
            }
            var shape: [Int] = []
            for d in shapeValues {
                guard let v = d.intValue, v >= 0 else {
                    throw DebertaError(.tensor, file: file, tensor: name, "shape \(JSONValue.array(shapeValues).serialized()) has a dimension that is not a non-negative integer")
                }
                shape.append(v)
            }
            guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= begin
            else {
                throw DebertaError(.tensor, file: file, tensor: name, "'data_offsets' must be two non-negative integers [begin, end] with begin <= end")
            }
            guard let count = elementCount(shape), let size = checkedMul(count, dtype.size) else {
                throw DebertaError(.tensor, file: file, tensor: name, "shape \(shape) overflows")
            }
            guard size == end - begin else {
                throw DebertaError(.tensor, file: file, tensor: name, "shape \(shape) of \(dtype.rawValue) needs \(size) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // The tensors, sorted by offset, must tile the data buffer exactly.
        let order = entries.indices.sorted { (entries[$0].begin, entries[$0].end) < (entries[$1].begin, entries[$1].end) }
        var expected = 0
        for k in order {
            let e = entries[k]
            if e.begin != expected {
                if e.begin < expected {
                    throw DebertaError(.tensor, file: file, tensor: e.name, "data_offsets [\(e.begin), \(e.end)] overlap the previous tensor, which ends at \(expected)")
                }
                throw DebertaError(.tensor, file: file, tensor: e.name, "data_offsets [\(e.begin), \(e.end)] leave a gap after byte \(expected) of the data buffer")
            }
            expected = e.end
        }
        guard expected == dataLength else {
            if expected > dataLength {
                throw DebertaError(.malformedFile, file: file, "tensors need a \(expected)-byte data buffer but the file holds \(dataLength) bytes after the header (truncated?)")
            }
            throw DebertaError(.malformedFile, file: file, "\(dataLength - expected) bytes after the last tensor are not described by the header")
        }

        var tensors: [TensorView] = []
        tensors.reserveCapacity(entries.count)
        for e in entries {
            guard let r = region.slice(offset: dataStart + e.begin, count: e.end - e.begin) else {
                throw DebertaError(.tensor, file: file, tensor: e.name, "data lies outside the file")
            }
            tensors.append(TensorView(name: e.name, dtype: e.dtype, shape: e.shape, region: r, file: file))
        }
        return Parsed(tensors: tensors, metadata: metadata)
    }
}
