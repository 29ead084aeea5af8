/// The tensors of a PyTorch state dict.
public struct TorchStateDict: Sendable {
    /// Names as the state dict keys them, in the pickle's dict order.
    public var tensors: [TensorView]
    /// Keys whose values were not tensors (ints, strings...): reported, not loaded.
    public var skipped: [String]
    /// "pytorch-zip" or "pytorch-legacy".
    public var format: String

    public init(tensors: [TensorView], skipped: [String], format: String) {
        self.tensors = tensors
        self.skipped = skipped
        self.format = format
    }
}

/// Reads `torch.save` checkpoints without executing anything: the zip format (torch >= 1.6) and the
/// legacy pickle stream. See `PickleMachine` for what the pickle may contain and `ZipArchive` for the
/// archive checks.
public enum TorchCheckpoint {
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    static let legacyProtocolVersion = 1001
    static let maxPickleBytes = CheckpointLimits.maxPickleBytes
    /// A non-contiguous view larger than its storage (a stride-0 expand) is still materialized up to this size.
    static let smallMaterialization = 16 << 20
    static let resaveAdvice = "re-save it with a current torch (`torch.save(torch.load(path), path2)`) or convert it with `deberta convert`"

    /// Parses a PyTorch checkpoint held in `region` (normally a whole mapped file named `file`):
    /// the zip format (torch >= 1.6) or the legacy pickle-stream format. Returns the state dict's tensors
    /// in the pickle's dict order. Never executes anything.
    public static func load(_ region: ByteRegion, file: String) throws -> TorchStateDict {
        let b = region.bytes
        if b.count >= 4, b[0] == 0x50, b[1] == 0x4B, (b[2] == 0x03 && b[3] == 0x04) || (b[2] == 0x05 && b[3] == 0x06) {
            return try loadZip(region, file: file)
        }
        if b.count >= 262, b[257] == 0x75, b[258] == 0x73, b[259] == 0x74, b[260] == 0x61, b[261] == 0x72 {
            throw DebertaError(.unsupported, file: file, "is a PyTorch tar checkpoint (torch < 0.4), which is not supported; \(resaveAdvice)")
        }
        if b.count >= legacyMagic.count, b.prefix(legacyMagic.count).elementsEqual(legacyMagic) {
            return try loadLegacy(region, file: file)
        }
        let head = b.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        throw DebertaError(.malformedFile, file: file, "is not a PyTorch checkpoint: expected a zip archive (50 4b 03 04) or a legacy torch pickle stream (80 02 8a 0a ...), found \(head.isEmpty ? "an empty file" : head)")
    }

    // MARK: zip

    static func loadZip(_ region: ByteRegion, file: String) throws -> TorchStateDict {
        let zip = try ZipArchive(region, file: file)
        guard !zip.entries.isEmpty else {
            throw DebertaError(.malformedFile, file: file, "is an empty zip archive, not a torch.save checkpoint")
        }

        // TorchScript (torch.jit.save) archives also hold a data.pkl, but it pickles a scripted module.
        for e in zip.entries {
            let parts = e.name.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count >= 2, parts[1] == "constants.pkl" || (parts[1] == "code" && parts.count > 2) {
                throw DebertaError(.malformedFile, file: file, "is a TorchScript archive (torch.jit.save: it has '\(e.name)'), not a state dict; load it in Python and save `model.state_dict()` with torch.save")
            }
        }

        // One top-level folder of any name.
        var top: Substring?
        for e in zip.entries {
            let parts = e.name.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw DebertaError(.malformedFile, file: file, "has a zip entry '\(e.name)' outside a top-level folder; a torch.save archive keeps everything under one folder")
            }
            if let t = top, t != parts[0] {
                throw DebertaError(.malformedFile, file: file, "has zip entries under two top-level folders ('\(t)' and '\(parts[0])'); a torch.save archive has exactly one")
            }
            top = parts[0]
        }
        let root = String(top ?? "archive")

        guard let pkl = zip.entry(named: "\(root)/data.pkl") else {
            throw DebertaError(.malformedFile, file: file, "has no '\(root)/data.pkl' entry: it is a zip archive but not a torch.save checkpoint")
        }

        var bigEndian = false
        if let e = zip.entry(named: "\(root)/byteorder") {
            guard e.uncompressedSize <= 16 else {
                throw DebertaError(.malformedFile, file: file, "has a '\(e.name)' entry of \(e.uncompressedSize) bytes, expected \"little\" or \"big\"")
            }
            let bytes = try zip.contents(e, size: e.uncompressedSize, exact: true, what: "byteorder")
            let text = trimmed(String(decoding: bytes.bytes, as: UTF8.self))
            switch text {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default: throw DebertaError(.malformedFile, file: file, "has byteorder '\(text)', expected \"little\" or \"big\"")
            }
        }

        guard pkl.uncompressedSize <= maxPickleBytes else {
            throw DebertaError(.malformedFile, file: file, "declares a data.pkl of \(pkl.uncompressedSize) bytes, more than the 1 GiB limit for a state dict's pickle")
        }
        var inflated = pkl.isStored ? 0 : pkl.uncompressedSize
        try checkInflatedTotal(inflated, archiveBytes: region.count, file: file)
        let pklRegion = try zip.contents(pkl, size: pkl.uncompressedSize, exact: true, what: "data.pkl")
        let machine = PickleMachine(pklRegion.bytes, file: file, what: "data.pkl", form: .zip)
        let object = try withExtendedLifetime(pklRegion) { try machine.run() }

        // Every deflated storage the pickle declares, at the size it declares, before inflating any:
        // the total must fit the stated limits (a 5 MB file must not inflate to 5 GiB).
        var declaredBytes: [String: Int] = [:]
        for s in machine.storages { declaredBytes[s.key] = max(declaredBytes[s.key] ?? 0, s.rootBytes) }
        for (key, bytes) in declaredBytes {
            guard let e = zip.entry(named: "\(root)/data/\(key)"), !e.isStored else { continue }
            inflated = checkedAdd(inflated, bytes) ?? Int.max
        }
        try checkInflatedTotal(inflated, archiveBytes: region.count, file: file)

        let resolver = StorageResolver(file: file, bigEndian: bigEndian) { key, bytes in
            let name = "\(root)/data/\(key)"
            guard let e = zip.entry(named: name) else {
                throw DebertaError(.malformedFile, file: file, "the pickle references storage '\(key)' but the archive has no '\(name)' entry")
            }
            // Stored records: at least the bytes the storage declares (torch writes exactly that many);
            // deflated records: inflated to exactly that many bytes, never more.
            return try zip.contents(e, size: bytes, exact: false, what: "storage '\(key)'")
        }
        return try collect(object, machine: machine, resolver: resolver, file: file, format: "pytorch-zip")
    }

    /// Throws `.limit` when deflated entries would inflate to more than the stated limits: 16 GiB, 32 ×
    /// the archive's size + 64 MiB, and half the memory this process may still use.
    static func checkInflatedTotal(_ total: Int, archiveBytes: Int, file: String, available: Int? = nil) throws {
        guard total > 0 else { return }
        let byRatio = checkedAdd(checkedMul(archiveBytes, CheckpointLimits.maxInflateRatio) ?? Int.max, CheckpointLimits.inflateSlack) ?? Int.max
        let memory = available ?? MemoryBudget.available()
        let byMemory = memory / 2
        let limit = min(CheckpointLimits.maxInflatedBytes, byRatio, byMemory)
        guard total <= limit else {
            let why = limit == byMemory ? "half the \(memory) bytes of memory available"
                : limit == byRatio ? "\(CheckpointLimits.maxInflateRatio) × the archive's \(archiveBytes) bytes + 64 MiB"
                : "the \(CheckpointLimits.maxInflatedBytes >> 30) GiB limit for deflated storages"
            throw DebertaError(.limit, file: file, "deflated zip entries would inflate to \(total) bytes, more than \(limit) (\(why)); refusing it as a zip bomb (torch writes storages uncompressed: re-save with torch.save)")
        }
    }

    static func trimmed(_ s: String) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" || $0 == "\0" }
        return String(s.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }

    // MARK: legacy

    static func loadLegacy(_ region: ByteRegion, file: String) throws -> TorchStateDict {
        let bytes = region.bytes
        var position = legacyMagic.count
        guard position < bytes.count, bytes[position] == 0x2E else {
            throw DebertaError(.malformedFile, file: file, "starts like a legacy torch checkpoint but its magic-number pickle is malformed")
        }
        position += 1

        func next(_ what: String, form: PickleMachine.PersistentIDForm = .zip) throws -> (PValue, PickleMachine) {
            let m = PickleMachine(bytes, position: position, file: file, what: "legacy \(what) pickle", form: form)
            let v = try m.run()
            position = m.position
            return (v, m)
        }

        let (version, _) = try next("protocol version")
        guard case let .int(v) = version, v == legacyProtocolVersion else {
            throw DebertaError(.malformedFile, file: file, "legacy checkpoint has protocol version \(describe(version)), expected \(legacyProtocolVersion)")
        }
        let (sysInfo, _) = try next("sys_info")
        guard case .dict = sysInfo else {
            throw DebertaError(.malformedFile, file: file, "legacy checkpoint's sys_info pickle is \(sysInfo.withArticle), expected a dict")
        }
        // Storage data is always little-endian in the legacy format (torch converts on write and read).
        let (object, machine) = try next("object", form: .legacy)
        let (keysValue, keysMachine) = try next("storage keys")
        guard case let .list(l) = keysValue else {
            throw DebertaError(.malformedFile, file: file, "legacy checkpoint's storage-key pickle is \(keysValue.withArticle), expected a list of keys")
        }
        var keys: [String] = []
        for k in keysMachine.listItems(l) {
            switch k {
            case let .string(s): keys.append(s)
            case let .int(i): keys.append(String(i))
            default: throw DebertaError(.malformedFile, file: file, "legacy checkpoint's storage-key list holds \(k.withArticle), expected strings")
            }
        }

        // Every root storage's declared size and element size, from the persistent ids.
        var declared: [String: (bytes: Int, elementSize: Int)] = [:]
        for s in machine.storages {
            if let d = declared[s.key] {
                guard d.bytes == s.rootBytes else {
                    throw DebertaError(.malformedFile, file: file, "storage '\(s.key)' is declared as both \(d.bytes) and \(s.rootBytes) bytes")
                }
            } else {
                declared[s.key] = (s.rootBytes, s.dtype.size) // the first reference's dtype, as torch does
            }
        }

        var data: [String: ByteRegion] = [:]
        for key in keys {
            guard let d = declared[key] else {
                throw DebertaError(.malformedFile, file: file, "legacy checkpoint lists storage '\(key)' that no tensor references, so its element size is unknown")
            }
            guard data[key] == nil else {
                throw DebertaError(.malformedFile, file: file, "legacy checkpoint lists storage '\(key)' twice")
            }
            var r = ByteReader(bytes, file: file, what: "legacy storage '\(key)'", position: position)
            let numel = try r.le(Int64.self)
            guard numel >= 0, let n = Int(exactly: numel), let size = checkedMul(n, d.elementSize), size == d.bytes else {
                throw DebertaError(.malformedFile, file: file, "legacy storage '\(key)' holds \(numel) elements, expected \(d.bytes / max(d.elementSize, 1)) as its persistent id declares")
            }
            guard let slice = region.slice(offset: r.position, count: size) else {
                throw DebertaError(.malformedFile, file: file, "legacy storage '\(key)' needs \(size) bytes at offset \(r.position) but the file ends at \(bytes.count); the file is truncated")
            }
            data[key] = slice
            position = r.position + size
        }

        let resolver = StorageResolver(file: file, bigEndian: false) { key, _ in
            guard let region = data[key] else {
                throw DebertaError(.malformedFile, file: file, "the pickle references storage '\(key)' but the legacy checkpoint holds no data for it")
            }
            return region
        }
        return try collect(object, machine: machine, resolver: resolver, file: file, format: "pytorch-legacy")
    }

    static func describe(_ v: PValue) -> String {
        switch v {
        case let .int(i): return String(i)
        case let .string(s): return "'\(s)'"
        default: return v.withArticle
        }
    }

    // MARK: state dict

    /// Finds the state dict (the top dict, or one wrapped under "state_dict" / "model" / "module")
    /// and turns its tensors into views.
    static func collect(_ object: PValue, machine: PickleMachine, resolver: StorageResolver, file: String, format: String) throws -> TorchStateDict {
        var current = object
        var path: [String] = []
        var entries: [(key: PValue, value: PValue)] = []
        search: for _ in 0 ..< 4 {
            guard case let .dict(d) = current else {
                let at = path.isEmpty ? "the checkpoint" : "'\(path.joined(separator: "."))'"
                throw DebertaError(.malformedFile, file: file, "expected \(at) to hold a dict of tensors (a state dict), found \(current.withArticle)")
            }
            entries = machine.dictEntries(d)
            if entries.contains(where: { if case .tensor = $0.value { return true }; return false }) {
                break search
            }
            for wrapper in ["state_dict", "model", "module"] {
                if let e = entries.first(where: { if case .string(wrapper) = $0.key { return true }; return false }), case .dict = e.value {
                    current = e.value
                    path.append(wrapper)
                    continue search
                }
            }
            break
        }
        var tensors: [TensorView] = []
        var skipped: [String] = []
        for (key, value) in entries {
            let name: String
            switch key {
            case let .string(s): name = s
            case let .int(i): name = String(i)
            default: name = "<\(key.kind) key>"
            }
            guard case let .tensor(t) = value, case .string = key else {
                skipped.append(name)
                continue
            }
            tensors.append(try resolver.view(machine.tensors[t], index: t, storage: machine.storages[machine.tensors[t].storage], name: name))
        }
        guard !tensors.isEmpty else {
            let at = path.isEmpty ? "" : " (under '\(path.joined(separator: "."))')"
            throw DebertaError(.malformedFile, file: file, "has no tensors: the state dict\(at) holds \(entries.count) entries and none is a tensor")
        }
        return TorchStateDict(tensors: tensors, skipped: skipped, format: format)
    }
}

/// Turns tensor records into views: checks each against its storage, maps contiguous ones in place,
/// materializes strided ones (bounded), byte-swaps big-endian data, and shares storages between tensors.
final class StorageResolver {
    let file: String
    let bigEndian: Bool
    /// key, bytes -> a region of exactly `bytes` bytes.
    let fetch: (String, Int) throws -> ByteRegion

    private var declared: [String: Int] = [:]
    private var raw: [String: ByteRegion] = [:]
    private var swapped: [String: ByteRegion] = [:]
    private var materialized: [Int: ByteRegion] = [:]
    private var storageBytes = 0
    private var materializedBytes = 0

    init(file: String, bigEndian: Bool, fetch: @escaping (String, Int) throws -> ByteRegion) {
        self.file = file
        self.bigEndian = bigEndian
        self.fetch = fetch
    }

    private func fail(_ name: String, _ message: String) -> DebertaError {
        DebertaError(.tensor, file: file, tensor: name, message)
    }

    /// The bytes of `ref` (a whole storage or a legacy view of one), byte-swapped for `elementSize`
    /// when the checkpoint is big-endian.
    private func bytes(of ref: StorageRef, elementSize: Int, name: String) throws -> ByteRegion {
        if let d = declared[ref.key], d != ref.rootBytes {
            throw fail(name, "storage '\(ref.key)' is declared as both \(d) and \(ref.rootBytes) bytes")
        }
        declared[ref.key] = ref.rootBytes
        var region: ByteRegion
        if let r = raw[ref.key] {
            region = r
        } else {
            region = try fetch(ref.key, ref.rootBytes)
            guard region.count == ref.rootBytes else {
                throw fail(name, "storage '\(ref.key)' holds \(region.count) bytes, expected \(ref.rootBytes)")
            }
            raw[ref.key] = region
            storageBytes = checkedAdd(storageBytes, region.count) ?? Int.max
        }
        if bigEndian, elementSize > 1 {
            let cacheKey = "\(elementSize)/\(ref.key)"
            if let s = swapped[cacheKey] {
                region = s
            } else {
                let source = region
                let storage = try ByteStorage.allocate(count: source.count, file: file, what: "byte-swapping storage '\(ref.key)' for tensor '\(name)'") { dst in
                    let src = source.bytes
                    let n = source.count / elementSize
                    guard n > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
                    for i in 0 ..< n {
                        let base = i * elementSize
                        for j in 0 ..< elementSize {
                            d.storeBytes(of: s.load(fromByteOffset: base + elementSize - 1 - j, as: UInt8.self), toByteOffset: base + j, as: UInt8.self)
                        }
                    }
                }
                region = ByteRegion(storage: storage)
                swapped[cacheKey] = region
            }
        }
        guard let view = region.slice(offset: ref.viewByteOffset, count: ref.viewBytes) else {
            throw fail(name, "storage '\(ref.key)' view of \(ref.viewBytes) bytes at \(ref.viewByteOffset) lies outside its \(region.count) bytes")
        }
        return view
    }

    func view(_ t: TensorRecord, index: Int, storage ref: StorageRef, name: String) throws -> TensorView {
        let dtype = t.dtype
        let elementSize = dtype.size
        guard t.shape.count == t.stride.count else {
            throw fail(name, "has \(t.shape.count) sizes but \(t.stride.count) strides")
        }
        if let bad = t.shape.first(where: { $0 < 0 }) {
            throw fail(name, "has a negative size \(bad) in shape \(t.shape)")
        }
        if let bad = t.stride.first(where: { $0 < 0 }) {
            throw fail(name, "has a negative stride \(bad) in strides \(t.stride)")
        }
        guard t.offset >= 0 else {
            throw fail(name, "has a negative storage offset \(t.offset)")
        }
        guard let numel = elementCount(t.shape), checkedMul(numel, elementSize) != nil else {
            throw fail(name, "has shape \(t.shape), whose element count overflows")
        }
        // Capacity of the storage (or view) in elements of the tensor's dtype.
        let capacity = ref.viewBytes / elementSize
        var strides = t.stride
        if numel > 0 {
            var extent = t.offset
            for (i, size) in t.shape.enumerated() {
                if size == 1 { strides[i] = 0; continue } // irrelevant stride
                guard let step = checkedMul(size - 1, strides[i]), let e = checkedAdd(extent, step) else {
                    throw fail(name, "shape \(t.shape) with strides \(t.stride) reaches beyond any storage (overflow)")
                }
                extent = e
            }
            guard extent < capacity else {
                throw fail(name, "shape \(t.shape), strides \(t.stride) and offset \(t.offset) reach element \(extent) of storage '\(ref.key)', which holds \(capacity) elements")
            }
        }

        var contiguous = true
        var expected = 1
        for i in stride(from: t.shape.count - 1, through: 0, by: -1) where t.shape[i] != 1 {
            if strides[i] != expected { contiguous = false; break }
            expected *= t.shape[i]
        }

        let byteCount = numel * elementSize
        if !contiguous, numel > 0, numel > capacity, byteCount > TorchCheckpoint.smallMaterialization {
            throw fail(name, "is a strided view (shape \(t.shape), strides \(t.stride)) of \(numel) elements over a storage of only \(capacity); refusing to expand it to \(byteCount) bytes")
        }

        let base = try bytes(of: ref, elementSize: elementSize, name: name)
        if numel == 0 {
            guard let empty = base.slice(offset: 0, count: 0) else { throw fail(name, "empty tensor has no storage") }
            return TensorView(name: name, dtype: dtype, shape: t.shape, region: empty, file: file)
        }
        if contiguous {
            guard let start = checkedMul(t.offset, elementSize), let region = base.slice(offset: start, count: byteCount) else {
                throw fail(name, "lies outside storage '\(ref.key)' (\(base.count) bytes)")
            }
            return TensorView(name: name, dtype: dtype, shape: t.shape, region: region, file: file)
        }

        if let done = materialized[index] {
            return TensorView(name: name, dtype: dtype, shape: t.shape, region: done, file: file)
        }
        // All copies together stay within twice the storages' bytes plus 64 MiB.
        let budget = (checkedMul(storageBytes, 2) ?? Int.max) &+ (64 << 20)
        guard let total = checkedAdd(materializedBytes, byteCount), total <= budget else {
            throw fail(name, "strided views would need more than \(budget) bytes of copies in total (twice the checkpoint's storage data plus 64 MiB); refusing")
        }
        materializedBytes = total
        let storage = try ByteStorage.allocate(count: byteCount, file: file, what: "copying strided tensor '\(name)'") { dst in
            guard let src = base.bytes.baseAddress, let out = dst.baseAddress else { return }
            Self.gather(src: src, dst: out, elementSize: elementSize, shape: t.shape, strides: strides, offset: t.offset)
        }
        let region = ByteRegion(storage: storage)
        materialized[index] = region
        return TensorView(name: name, dtype: dtype, shape: t.shape, region: region, file: file)
    }

    /// Copies a strided view into C order. Callers have checked that every element index lies in the
    /// source (offset + Σ(size-1)·stride < capacity) and that size-1 dimensions have stride 0.
    static func gather(src: UnsafeRawPointer, dst: UnsafeMutableRawPointer, elementSize: Int, shape: [Int], strides: [Int], offset: Int) {
        let nd = shape.count
        guard nd > 0 else { return }
        let inner = shape[nd - 1]
        let innerStride = strides[nd - 1]
        let numel = shape.reduce(1, *)
        let rows = numel / inner
        var index = [Int](repeating: 0, count: nd)
        var element = offset
        var out = 0
        for _ in 0 ..< rows {
            if innerStride == 1 {
                (dst + out).copyMemory(from: src + element * elementSize, byteCount: inner * elementSize)
                out += inner * elementSize
            } else {
                var e = element
                for _ in 0 ..< inner {
                    (dst + out).copyMemory(from: src + e * elementSize, byteCount: elementSize)
                    out += elementSize
                    e += innerStride
                }
            }
            var d = nd - 2
            while d >= 0 {
                index[d] += 1
                element += strides[d]
                if index[d] < shape[d] { break }
                element -= strides[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}

