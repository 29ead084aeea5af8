/// The few Python globals a PyTorch state dict pickle may name. Anything else is refused when the
/// GLOBAL / STACK_GLOBAL opcode names it, before it could ever be called.
enum TorchGlobal: Equatable, Sendable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensorV3
    case rebuildParameter
    case rebuildParameterWithState
    case rebuildFromTypeV2
    case tensorClass
    case parameterClass
    /// torch.<X>Storage; `untyped` for torch.UntypedStorage (bytes, dtype U8).
    case storageClass(DType, untyped: Bool, name: String)
    case dtype(DType, name: String)

    var qualifiedName: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: return "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: return "torch._tensor._rebuild_from_type_v2"
        case .tensorClass: return "torch.Tensor"
        case .parameterClass: return "torch.nn.parameter.Parameter"
        case let .storageClass(_, _, name): return "torch.\(name)"
        case let .dtype(_, name): return "torch.\(name)"
        }
    }

    static let storageClasses: [String: DType] = [
        "DoubleStorage": .f64, "FloatStorage": .f32, "HalfStorage": .f16, "BFloat16Storage": .bf16,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool,
    ]

    static let dtypes: [String: DType] = [
        "float32": .f32, "float": .f32, "float16": .f16, "half": .f16, "bfloat16": .bf16,
        "float64": .f64, "double": .f64, "int64": .i64, "long": .i64, "int32": .i32, "int": .i32,
        "int16": .i16, "short": .i16, "int8": .i8, "uint8": .u8, "bool": .bool,
        "uint16": .u16, "uint32": .u32, "uint64": .u64,
        "float8_e4m3fn": .f8e4m3, "float8_e5m2": .f8e5m2,
    ]

    /// nil when the global is not on the allow-list.
    static func resolve(module: String, name: String) -> TorchGlobal? {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): return .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch._tensor", "Tensor"): return .tensorClass
        case ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter"): return .parameterClass
        case ("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage"):
            return .storageClass(.u8, untyped: true, name: name)
        case ("torch", _):
            if let d = storageClasses[name] { return .storageClass(d, untyped: false, name: name) }
            if let d = dtypes[name] { return .dtype(d, name: name) }
            return nil
        default:
            return nil
        }
    }
}

/// A value on the symbolic stack. Containers, storages and tensors live in the machine's arenas and are
/// referenced by index: values are flat (no recursive enum), so neither building nor freeing a deeply
/// nested structure recurses, and shared references behave as Python's do (memo, mutation).
enum PValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    /// Contents are never needed: only the length is kept.
    case bytes(count: Int)
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case global(TorchGlobal)
    case storage(Int)
    case tensor(Int)

    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case let .global(g): return "global \(g.qualifiedName)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    /// "an int", "a tuple", "None": for messages.
    var withArticle: String {
        switch self {
        case .none: return "None"
        case .int: return "an int"
        case .global: return "the \(kind)"
        default: return "a \(kind)"
        }
    }
}

/// An insertion-ordered dict (Python semantics: re-setting a key keeps its position).
struct PDict: Sendable {
    var entries: [(key: PValue, value: PValue)] = []
    private var stringIndex: [String: Int] = [:]
    private var intIndex: [Int: Int] = [:]

    mutating func set(_ key: PValue, _ value: PValue) {
        switch key {
        case let .string(s):
            if let i = stringIndex[s] { entries[i].value = value; return }
            stringIndex[s] = entries.count
        case let .int(n):
            if let i = intIndex[n] { entries[i].value = value; return }
            intIndex[n] = entries.count
        default:
            break
        }
        entries.append((key, value))
    }
}

/// What a persistent id names: `bytes` bytes of storage `key` (from `byteOffset` for a legacy view).
struct StorageRef: Sendable {
    var key: String
    var dtype: DType
    var untyped: Bool
    /// Bytes of the whole (root) storage the id declares: numel × element size.
    var rootBytes: Int
    /// Legacy storage views: the window of the root storage this id stands for.
    var viewByteOffset: Int
    var viewBytes: Int
}

/// `_rebuild_tensor_v2/_v3` arguments, kept unchecked until the storage sizes are known.
struct TensorRecord: Sendable {
    var storage: Int
    var dtype: DType
    var offset: Int
    var shape: [Int]
    var stride: [Int]
}

/// A restricted pickle machine: it interprets the opcodes a torch state dict uses, symbolically.
/// It imports nothing, calls nothing and resolves no global beyond an allow-list of names mapped to
/// enum cases. Every length is checked against the bytes that remain before anything is allocated,
/// and the stack, mark stack and memo are bounded.
final class PickleMachine {
    enum PersistentIDForm { case zip, legacy }

    static let maxStack = 100_000
    static let maxMarks = 100_000
    static let maxMemo = 1_000_000
    static let maxLine = 1_024

    let file: String
    let what: String
    let form: PersistentIDForm
    private var r: ByteReader
    private var stack: [PValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PValue] = [:]

    private(set) var tuples: [[PValue]] = []
    private(set) var lists: [[PValue]] = []
    private(set) var dicts: [PDict] = []
    private(set) var storages: [StorageRef] = []
    private(set) var tensors: [TensorRecord] = []

    /// Where the machine stopped (just after STOP).
    var position: Int { r.position }

    /// At most this many objects (`CheckpointLimits.maxPickleObjects`; tests lower it).
    let maxObjects: Int

    init(_ bytes: UnsafeRawBufferPointer, position: Int = 0, file: String, what: String, form: PersistentIDForm,
         maxObjects: Int = CheckpointLimits.maxPickleObjects) {
        self.maxObjects = maxObjects
        self.r = ByteReader(bytes, file: file, what: what, position: position)
        self.file = file
        self.what = what
        self.form = form
    }

    private func fail(_ message: String, at offset: Int? = nil) -> DebertaError {
        DebertaError(.malformedFile, file: file, "\(what): \(message) (at byte \(offset ?? r.position))")
    }

    // MARK: stack

    private var floor: Int { marks.last ?? 0 }

    private func push(_ v: PValue) throws {
        guard stack.count < Self.maxStack else { throw fail("pickle stack deeper than \(Self.maxStack) items") }
        stack.append(v)
    }

    private func pop(_ opname: String) throws -> PValue {
        guard stack.count > floor, let v = stack.popLast() else {
            throw fail("\(opname) needs a value but the pickle stack is empty; the pickle is corrupt")
        }
        return v
    }

    private func top(_ opname: String) throws -> PValue {
        guard stack.count > floor, let v = stack.last else {
            throw fail("\(opname) needs a value but the pickle stack is empty; the pickle is corrupt")
        }
        return v
    }

    /// The items pushed since the last MARK, removing them and the mark.
    private func popMark(_ opname: String) throws -> [PValue] {
        guard let m = marks.popLast() else { throw fail("\(opname) without a MARK; the pickle is corrupt") }
        guard m <= stack.count else { throw fail("\(opname): mark beyond the stack; the pickle is corrupt") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    /// Objects built so far (tuples, lists, dicts, storages, tensors) plus the items stored in them,
    /// bounded by `CheckpointLimits.maxPickleObjects`: each costs memory beyond the opcode byte that made it.
    private var objects = 0

    private func charge(_ n: Int, at: Int? = nil) throws {
        objects += n
        guard objects <= maxObjects else {
            throw fail("builds more than \(maxObjects) objects, the limit for a state dict's pickle", at: at)
        }
    }

    private func built(items: Int = 0) throws { try charge(1 + items) }

    private func newTuple(_ items: [PValue]) throws -> PValue {
        try built(items: items.count)
        tuples.append(items)
        return .tuple(tuples.count - 1)
    }

    private func newDict() throws -> PValue {
        try built()
        dicts.append(PDict())
        return .dict(dicts.count - 1)
    }

    private func newList(_ items: [PValue]) throws -> PValue {
        try built(items: items.count)
        lists.append(items)
        return .list(lists.count - 1)
    }

    // MARK: reading

    private func length(_ n: UInt64, _ opname: String) throws -> Int {
        guard let i = Int(exactly: n), i <= r.remaining else {
            throw fail("\(opname) declares \(n) bytes but only \(r.remaining) remain; the pickle is truncated or forged")
        }
        return i
    }

    /// A string's length: within the bytes that remain and the string limit.
    private func stringLength(_ n: UInt64, _ opname: String) throws -> Int {
        let i = try length(n, opname)
        guard i <= CheckpointLimits.maxPickleString else {
            throw fail("\(opname) string of \(i) bytes is longer than the limit of \(CheckpointLimits.maxPickleString)")
        }
        return i
    }

    private func readLine(_ opname: String) throws -> String {
        let start = r.position
        while true {
            guard r.position - start <= Self.maxLine else { throw fail("\(opname) argument longer than \(Self.maxLine) bytes", at: start) }
            let b = try r.u8()
            if b == 0x0A { break }
        }
        let raw = UnsafeRawBufferPointer(rebasing: r.bytes[start ..< r.position - 1])
        guard let s = String(validating: raw, as: UTF8.self) else { throw fail("\(opname) argument is not valid UTF-8", at: start) }
        return s
    }

    private func utf8(_ raw: UnsafeRawBufferPointer, _ opname: String) throws -> String {
        guard let s = String(validating: raw, as: UTF8.self) else { throw fail("\(opname) string is not valid UTF-8") }
        return s
    }

    /// Python 2 byte strings: UTF-8 when valid (torch loads with encoding='utf-8'), else Latin-1.
    private func legacyString(_ raw: UnsafeRawBufferPointer) -> String {
        if let s = String(validating: raw, as: UTF8.self) { return s }
        var s = ""
        s.unicodeScalars.append(contentsOf: raw.map { Unicode.Scalar($0) })
        return s
    }

    private func global(module: String, name: String, at offset: Int) throws -> PValue {
        guard let g = TorchGlobal.resolve(module: module, name: name) else {
            throw fail("refuses global '\(module).\(name)': only torch tensor-rebuild functions, torch storage and dtype classes and collections.OrderedDict may appear in a state dict (anything else could run code when loaded; if this file pickles a whole model, re-save its state_dict())", at: offset)
        }
        return .global(g)
    }

    private func memoPut(_ key: Int, _ opname: String) throws {
        guard key >= 0 else { throw fail("\(opname) with a negative memo index \(key)") }
        guard memo.count < Self.maxMemo || memo[key] != nil else { throw fail("pickle memo larger than \(Self.maxMemo) entries") }
        memo[key] = try top(opname)
    }

    private func memoGet(_ key: Int, _ opname: String) throws {
        guard let v = memo[key] else { throw fail("\(opname) of memo entry \(key), which was never stored; the pickle is corrupt") }
        try push(v)
    }

    // MARK: run

    /// Runs until STOP and returns the pickled object.
    func run() throws -> PValue {
        var ops = 0
        let maxOps = min(r.bytes.count, CheckpointLimits.maxPickleOpcodes)
        while true {
            ops += 1
            guard ops <= maxOps else { throw fail("runs more than \(maxOps) opcodes without STOP (the limit is \(CheckpointLimits.maxPickleOpcodes), and never more than its bytes)") }
            let at = r.position
            let op = try r.u8()
            switch op {
            case 0x80: // PROTO
                let v = try r.u8()
                guard v <= 5 else { throw fail("pickle protocol \(v) is not supported (0-5)", at: at) }
            case 0x95: // FRAME
                let n = try r.le(UInt64.self)
                _ = try length(n, "FRAME")
            case 0x2E: // STOP
                let v = try pop("STOP")
                guard stack.isEmpty, marks.isEmpty else {
                    throw fail("STOP with \(stack.count) values and \(marks.count) marks left over; the pickle is corrupt", at: at)
                }
                return v

            // globals
            case 0x63: // GLOBAL
                let module = try readLine("GLOBAL")
                let name = try readLine("GLOBAL")
                try push(try global(module: module, name: name, at: at))
            case 0x93: // STACK_GLOBAL
                let name = try pop("STACK_GLOBAL")
                let module = try pop("STACK_GLOBAL")
                guard case let .string(m) = module, case let .string(n) = name else {
                    throw fail("STACK_GLOBAL needs two strings, found \(module.kind) and \(name.kind)", at: at)
                }
                try push(try global(module: m, name: n, at: at))

            // memo
            case 0x71: try memoPut(Int(try r.u8()), "BINPUT")
            case 0x72: try memoPut(Int(try r.le(UInt32.self)), "LONG_BINPUT")
            case 0x94: try memoPut(memo.count, "MEMOIZE")
            case 0x68: try memoGet(Int(try r.u8()), "BINGET")
            case 0x6A: try memoGet(Int(try r.le(UInt32.self)), "LONG_BINGET")
            case 0x70: // PUT
                let line = try readLine("PUT")
                guard let k = Int(line) else { throw fail("PUT index '\(line)' is not an integer", at: at) }
                try memoPut(k, "PUT")
            case 0x67: // GET
                let line = try readLine("GET")
                guard let k = Int(line) else { throw fail("GET index '\(line)' is not an integer", at: at) }
                try memoGet(k, "GET")

            // containers
            case 0x29: try push(try newTuple([]))
            case 0x5D: try push(try newList([]))
            case 0x7D: try push(try newDict())
            case 0x28: // MARK
                guard marks.count < Self.maxMarks else { throw fail("more than \(Self.maxMarks) nested MARKs", at: at) }
                marks.append(stack.count)
            case 0x74: try push(try newTuple(try popMark("TUPLE")))
            case 0x85:
                let a = try pop("TUPLE1")
                try push(try newTuple([a]))
            case 0x86:
                let b = try pop("TUPLE2"), a = try pop("TUPLE2")
                try push(try newTuple([a, b]))
            case 0x87:
                let c = try pop("TUPLE3"), b = try pop("TUPLE3"), a = try pop("TUPLE3")
                try push(try newTuple([a, b, c]))
            case 0x6C: // LIST
                try push(try newList(try popMark("LIST")))
            case 0x64: // DICT
                let items = try popMark("DICT")
                let d = try newDict()
                try setItems(d, items, "DICT", at: at)
                try push(d)
            case 0x73: // SETITEM
                let v = try pop("SETITEM"), k = try pop("SETITEM")
                try setItems(try top("SETITEM"), [k, v], "SETITEM", at: at)
            case 0x75: // SETITEMS
                let items = try popMark("SETITEMS")
                try setItems(try top("SETITEMS"), items, "SETITEMS", at: at)
            case 0x61: // APPEND
                let v = try pop("APPEND")
                try append(try top("APPEND"), [v], "APPEND", at: at)
            case 0x65: // APPENDS
                let items = try popMark("APPENDS")
                try append(try top("APPENDS"), items, "APPENDS", at: at)

            // scalars
            case 0x4E: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x4A: try push(.int(Int(try r.le(Int32.self))))
            case 0x4B: try push(.int(Int(try r.u8())))
            case 0x4D: try push(.int(Int(try r.le(UInt16.self))))
            case 0x8A: // LONG1
                let n = Int(try r.u8())
                guard n <= 8 else { throw fail("LONG1 integer of \(n) bytes is too large (at most 8 supported)", at: at) }
                let raw = try r.take(n)
                var v: UInt64 = 0
                for (i, b) in raw.enumerated() { v |= UInt64(b) << UInt64(8 * i) }
                if n > 0, n < 8, raw[n - 1] & 0x80 != 0 { v |= ~0 << UInt64(8 * n) } // sign-extend
                try push(.int(Int(Int64(bitPattern: v))))
            case 0x47: // BINFLOAT (big-endian)
                let bits = try r.le(UInt64.self)
                try push(.float(Double(bitPattern: bits.byteSwapped)))

            // strings and bytes
            case 0x58: // BINUNICODE
                let n = try stringLength(UInt64(try r.le(UInt32.self)), "BINUNICODE")
                try push(.string(try utf8(try r.take(n), "BINUNICODE")))
            case 0x8C: // SHORT_BINUNICODE
                let n = Int(try r.u8())
                try push(.string(try utf8(try r.take(n), "SHORT_BINUNICODE")))
            case 0x8D: // BINUNICODE8
                let n = try stringLength(try r.le(UInt64.self), "BINUNICODE8")
                try push(.string(try utf8(try r.take(n), "BINUNICODE8")))
            case 0x54: // BINSTRING (signed length)
                let n32 = try r.le(Int32.self)
                guard n32 >= 0 else { throw fail("BINSTRING with negative length \(n32)", at: at) }
                let n = try stringLength(UInt64(n32), "BINSTRING")
                try push(.string(legacyString(try r.take(n))))
            case 0x55: // SHORT_BINSTRING
                let n = Int(try r.u8())
                try push(.string(legacyString(try r.take(n))))
            case 0x42: // BINBYTES
                let n = try length(UInt64(try r.le(UInt32.self)), "BINBYTES")
                try r.skip(n)
                try push(.bytes(count: n))
            case 0x43: // SHORT_BINBYTES
                let n = Int(try r.u8())
                try r.skip(n)
                try push(.bytes(count: n))
            case 0x8E: // BINBYTES8
                let n = try length(try r.le(UInt64.self), "BINBYTES8")
                try r.skip(n)
                try push(.bytes(count: n))

            // stack manipulation
            case 0x30: // POP
                if stack.count > floor { stack.removeLast() } else if marks.popLast() == nil {
                    throw fail("POP on an empty stack; the pickle is corrupt", at: at)
                }
            case 0x31: _ = try popMark("POP_MARK")
            case 0x32: try push(try top("DUP"))

            // object construction: allow-listed callables only
            case 0x52: // REDUCE
                let args = try pop("REDUCE"), callable = try pop("REDUCE")
                try push(try reduce(callable, args, at: at))
            case 0x81: // NEWOBJ
                let args = try pop("NEWOBJ"), cls = try pop("NEWOBJ")
                guard case .global(.orderedDict) = cls, case let .tuple(t) = args, tuples[t].isEmpty else {
                    throw fail("refuses NEWOBJ of \(cls.kind): only collections.OrderedDict() may be created", at: at)
                }
                try push(try newDict())
            case 0x62: // BUILD
                let state = try pop("BUILD")
                let target = try top("BUILD")
                guard case .dict = target else {
                    throw fail("refuses BUILD on \(target.withArticle) (with \(state.withArticle) state): only an OrderedDict's metadata may be set", at: at)
                }
                // OrderedDict attributes (torch's _metadata): accepted and ignored.
            case 0x51: // BINPERSID
                let pid = try pop("BINPERSID")
                try push(try persistentLoad(pid, at: at))

            // refused opcodes
            case 0x69: throw fail("refuses opcode INST: it instantiates an arbitrary class (could run code)", at: at)
            case 0x6F: throw fail("refuses opcode OBJ: it instantiates an arbitrary class (could run code)", at: at)
            case 0x82, 0x83, 0x84: throw fail("refuses opcode EXT\(op == 0x82 ? 1 : op == 0x83 ? 2 : 4): extension registry globals are not allowed", at: at)
            case 0x92: throw fail("refuses opcode NEWOBJ_EX: it instantiates an arbitrary class", at: at)
            case 0x50: throw fail("refuses opcode PERSID (text persistent id): torch writes BINPERSID", at: at)
            default:
                throw fail("unsupported pickle opcode 0x\(String(op, radix: 16)) ('\(Self.opcodeName(op))'); a torch state dict does not use it", at: at)
            }
        }
    }

    static func opcodeName(_ op: UInt8) -> String {
        switch op {
        case 0x49: return "INT"
        case 0x4C: return "LONG"
        case 0x53: return "STRING"
        case 0x56: return "UNICODE"
        case 0x46: return "FLOAT"
        case 0x8B: return "LONG4"
        case 0x8F: return "EMPTY_SET"
        case 0x90: return "ADDITEMS"
        case 0x91: return "FROZENSET"
        case 0x96: return "BYTEARRAY8"
        case 0x97: return "NEXT_BUFFER"
        case 0x98: return "READONLY_BUFFER"
        default: return "unknown"
        }
    }

    private func setItems(_ target: PValue, _ items: [PValue], _ opname: String, at: Int) throws {
        guard case let .dict(d) = target else { throw fail("\(opname) on \(target.withArticle), not a dict", at: at) }
        guard items.count % 2 == 0 else { throw fail("\(opname) with an odd number of items (\(items.count))", at: at) }
        try charge(items.count, at: at)
        var i = 0
        while i < items.count {
            switch items[i] {
            case .list, .dict: throw fail("\(opname) with an unhashable \(items[i].kind) key", at: at)
            default: break
            }
            dicts[d].set(items[i], items[i + 1])
            i += 2
        }
    }

    private func append(_ target: PValue, _ items: [PValue], _ opname: String, at: Int) throws {
        guard case let .list(l) = target else { throw fail("\(opname) on \(target.withArticle), not a list", at: at) }
        try charge(items.count, at: at)
        lists[l].append(contentsOf: items)
    }

    // MARK: allow-listed calls

    private func reduce(_ callable: PValue, _ args: PValue, at: Int) throws -> PValue {
        guard case let .global(g) = callable else {
            throw fail("refuses REDUCE on \(callable.withArticle): only allow-listed torch functions may be called", at: at)
        }
        guard case let .tuple(t) = args else {
            throw fail("REDUCE of \(g.qualifiedName) with \(args.kind) arguments, expected a tuple", at: at)
        }
        let a = tuples[t]
        switch g {
        case .orderedDict:
            guard a.isEmpty else { throw fail("collections.OrderedDict called with \(a.count) arguments, expected none", at: at) }
            return try newDict()
        case .rebuildFromTypeV2:
            // _rebuild_from_type_v2(func, new_type, args, state)
            guard a.count == 4 else { throw fail("\(g.qualifiedName) called with \(a.count) arguments, expected 4", at: at) }
            guard case let .global(inner) = a[0], [.rebuildTensorV2, .rebuildTensorV3, .rebuildParameter].contains(inner) else {
                throw fail("\(g.qualifiedName) wraps \(a[0].kind), expected a torch tensor-rebuild function", at: at)
            }
            guard case let .global(type) = a[1], type == .tensorClass || type == .parameterClass else {
                throw fail("\(g.qualifiedName) rebuilds as \(a[1].kind); only torch.Tensor and torch.nn.parameter.Parameter are allowed", at: at)
            }
            guard case let .tuple(it) = a[2] else { throw fail("\(g.qualifiedName) with \(a[2].kind) arguments, expected a tuple", at: at) }
            return try call(inner, tuples[it], at: at)
        default:
            return try call(g, a, at: at)
        }
    }

    private func call(_ g: TorchGlobal, _ a: [PValue], at: Int) throws -> PValue {
        switch g {
        case .rebuildTensorV2:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard a.count == 6 || a.count == 7 else { throw fail("\(g.qualifiedName) called with \(a.count) arguments, expected 6 or 7", at: at) }
            guard case let .storage(s) = a[0] else { throw fail("\(g.qualifiedName): first argument is \(a[0].withArticle), expected a storage", at: at) }
            return try rebuild(storage: s, dtype: storages[s].dtype, a, g, at: at)
        case .rebuildTensorV3:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
            guard a.count == 7 || a.count == 8 else { throw fail("\(g.qualifiedName) called with \(a.count) arguments, expected 7 or 8", at: at) }
            guard case let .storage(s) = a[0] else { throw fail("\(g.qualifiedName): first argument is \(a[0].withArticle), expected a storage", at: at) }
            guard case let .global(.dtype(d, _)) = a[6] else { throw fail("\(g.qualifiedName): dtype argument is \(a[6].withArticle), expected a torch dtype", at: at) }
            return try rebuild(storage: s, dtype: d, a, g, at: at)
        case .rebuildParameter, .rebuildParameterWithState:
            // (data, requires_grad, backward_hooks[, state])
            let expected = g == .rebuildParameter ? 3 : 4
            guard a.count == expected else { throw fail("\(g.qualifiedName) called with \(a.count) arguments, expected \(expected)", at: at) }
            guard case .tensor = a[0] else { throw fail("\(g.qualifiedName) wraps \(a[0].withArticle), expected a tensor", at: at) }
            return a[0]
        default:
            throw fail("refuses REDUCE of \(g.qualifiedName): it is not a function a state dict may call", at: at)
        }
    }

    private func ints(_ v: PValue, _ what: String, _ g: TorchGlobal, at: Int) throws -> [Int] {
        let items: [PValue]
        switch v {
        case let .tuple(t): items = tuples[t]
        case let .list(l): items = lists[l]
        default: throw fail("\(g.qualifiedName): \(what) is \(v.withArticle), expected a tuple of ints", at: at)
        }
        return try items.map {
            guard case let .int(i) = $0 else { throw fail("\(g.qualifiedName): \(what) holds \($0.withArticle), expected ints", at: at) }
            return i
        }
    }

    private func rebuild(storage s: Int, dtype: DType, _ a: [PValue], _ g: TorchGlobal, at: Int) throws -> PValue {
        guard case let .int(offset) = a[1] else { throw fail("\(g.qualifiedName): storage offset is \(a[1].withArticle), expected an int", at: at) }
        let shape = try ints(a[2], "size", g, at: at)
        let stride = try ints(a[3], "stride", g, at: at)
        guard shape.count <= CheckpointLimits.maxTensorDimensions, stride.count <= CheckpointLimits.maxTensorDimensions else {
            throw fail("\(g.qualifiedName): a tensor of \(max(shape.count, stride.count)) dimensions is over the limit of \(CheckpointLimits.maxTensorDimensions)", at: at)
        }
        try built()
        tensors.append(TensorRecord(storage: s, dtype: dtype, offset: offset, shape: shape, stride: stride))
        return .tensor(tensors.count - 1)
    }

    /// ('storage', torch.<X>Storage, key, location, numel) for the zip format; the legacy format adds
    /// a sixth item, None or (view_key, offset, size) for a view of the root storage.
    private func persistentLoad(_ pid: PValue, at: Int) throws -> PValue {
        let expected = form == .zip ? 5 : 6
        guard case let .tuple(t) = pid else {
            throw fail("refuses persistent id of type \(pid.kind): expected a \(expected)-tuple ('storage', torch.<Type>Storage, key, location, numel\(form == .legacy ? ", view" : ""))", at: at)
        }
        let p = tuples[t]
        guard p.count == expected else {
            throw fail("refuses a persistent id with \(p.count) items: expected a \(expected)-tuple ('storage', torch.<Type>Storage, key, location, numel\(form == .legacy ? ", view" : ""))", at: at)
        }
        guard case .string("storage") = p[0] else {
            throw fail("refuses persistent id tagged \(p[0].kind == "str" ? "'\(stringValue(p[0]) ?? "")'" : p[0].kind): only 'storage' ids are supported", at: at)
        }
        guard case let .global(.storageClass(dtype, untyped, _)) = p[1] else {
            throw fail("persistent id names \(p[1].withArticle), expected a torch storage class such as torch.FloatStorage", at: at)
        }
        let key: String
        switch p[2] {
        case let .string(k): key = k
        case let .int(k): key = String(k)
        default: throw fail("persistent id key is \(p[2].withArticle), expected a string", at: at)
        }
        guard case .string = p[3] else { throw fail("persistent id location is \(p[3].withArticle), expected a string like 'cpu'", at: at) }
        guard case let .int(numel) = p[4] else {
            throw fail("persistent id of storage '\(key)' has \(p[4].withArticle) as its element count, expected an int", at: at)
        }
        guard numel >= 0 else {
            throw fail("persistent id of storage '\(key)' has element count \(numel), expected 0 or more", at: at)
        }
        guard let rootBytes = checkedMul(numel, dtype.size) else {
            throw fail("storage '\(key)' declares \(numel) elements, an impossible size", at: at)
        }
        var viewOffset = 0
        var viewBytes = rootBytes
        if form == .legacy {
            switch p[5] {
            case .none: break
            case let .tuple(vt):
                let v = tuples[vt]
                guard v.count == 3, case .string = v[0], case let .int(off) = v[1], case let .int(size) = v[2] else {
                    throw fail("storage '\(key)' has a malformed view (expected (view_key, offset, size))", at: at)
                }
                guard off >= 0, size >= 0, let ob = checkedMul(off, dtype.size), let sb = checkedMul(size, dtype.size),
                      let end = checkedAdd(ob, sb), end <= rootBytes
                else {
                    throw fail("storage '\(key)' has a view of \(size) elements at offset \(off), outside its \(numel) elements", at: at)
                }
                viewOffset = ob
                viewBytes = sb
            default:
                throw fail("storage '\(key)' has a view of type \(p[5].kind), expected None or a tuple", at: at)
            }
        }
        try built()
        storages.append(StorageRef(key: key, dtype: dtype, untyped: untyped, rootBytes: rootBytes, viewByteOffset: viewOffset, viewBytes: viewBytes))
        return .storage(storages.count - 1)
    }

    private func stringValue(_ v: PValue) -> String? {
        if case let .string(s) = v { return s }
        return nil
    }

    // MARK: reading results

    func dictEntries(_ d: Int) -> [(key: PValue, value: PValue)] { dicts[d].entries }
    func listItems(_ l: Int) -> [PValue] { lists[l] }
    func tupleItems(_ t: Int) -> [PValue] { tuples[t] }
}
