/// Every Checkpoint parser of untrusted bytes behind one call, as the fuzz targets (Fuzz/Sources) and the
/// corpus replay test (FuzzCorpusTests) drive them: parse, then touch what was parsed. Any input must
/// return or throw (a DebertaError or JSONParseError); a trap or a broken invariant is a bug.
public enum CheckpointParsers {
    public static let targets = ["safetensors", "pickle", "zip", "legacy", "shard-index", "json"]

    /// Runs target `name` on `bytes`; false for a name that is not a Checkpoint target.
    @discardableResult
    public static func exercise(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        let region = ByteRegion(storage: ByteStorage.copy(bytes))
        switch name {
        case "safetensors":
            for t in try SafeTensorsReader.read(region, file: "fuzz.safetensors").tensors { _ = t.floats().count }
        case "pickle":
            // The first byte picks the persistent-id form; the rest is the pickle.
            let form: PickleMachine.PersistentIDForm = (bytes.first ?? 0) & 1 == 0 ? .zip : .legacy
            let machine = PickleMachine(UnsafeRawBufferPointer(rebasing: region.bytes.dropFirst(min(1, bytes.count))),
                                        file: "fuzz.pkl", what: "data.pkl", form: form)
            let value = try withExtendedLifetime(region) { try machine.run() }
            if case let .dict(d) = value { _ = machine.dictEntries(d).count }
        case "zip":
            let zip = try ZipArchive(region, file: "fuzz.bin")
            for e in zip.entries where e.uncompressedSize <= 1 << 20 {
                _ = try? zip.contents(e, size: e.uncompressedSize, exact: true, what: e.name)
            }
            for t in try TorchCheckpoint.loadZip(region, file: "fuzz.bin").tensors { _ = t.floats().count }
        case "legacy":
            for t in try TorchCheckpoint.load(region, file: "fuzz.bin").tensors { _ = t.floats().count }
        case "shard-index":
            let index = try TensorStore.parseShardIndex(region.bytes, file: "fuzz.index.json")
            precondition(index.shards.count == index.tensorsByShard.count, "shard index: shards and groups differ")
        case "json":
            let value = try JSONParser.parse(region.bytes)
            // What we write parses back to the same value.
            let again = try JSONParser.parse(value.serialized())
            precondition(again == value, "JSON round trip changed the value")
            _ = value.serialized(pretty: true)
        default:
            return false
        }
        return true
    }
}
