import Checkpoint

/// What the schema knows of one weight: its logical shape and whether the converter quantizes it.
public struct WeightSpec: Sendable, Equatable {
    public enum Role: Sendable, Equatable {
        /// A linear layer's weight [out, in]: quantized by `convert --dtype int8|q4`.
        case linear
        /// The word-embedding table: quantized only with `--quantize-embeddings`.
        case embedding
        /// Biases, LayerNorms, position tables, the conv kernel: always kept in float.
        case float
    }

    public var shape: [Int]
    public var role: Role
    /// Kept in int8 in a q4 store (the MLM transform: mixed precision as in GGUF's Q4_K_M, its most
    /// sensitive weight at a higher precision; on the trained fixture q4 top-1 agreement 94.9% → ~96%).
    public var keepsInt8: Bool
}

/// Binds tensors by transformers name, checking shapes, and collects every missing, unexpected or
/// mis-shaped tensor into one error instead of stopping at the first. In recording mode (no store) it
/// reads nothing: every request is noted in `schema` and answered with nil, so the modules' own binding
/// code yields the expected shapes and the quantizable weights of a config.
final class WeightBinder {
    let file: String
    let config: DebertaConfig
    let quantization: QuantizationInfo?
    let isRecording: Bool
    /// bf16: float linear weights are converted to bf16 panels as they are bound.
    let precision: RuntimeOptions.Precision
    private var views: [String: TensorView] = [:]
    private var sourceNames: [String: String] = [:]
    private var used = Set<String>()
    private var missing: [String] = []
    private var misShaped: [String] = []
    private(set) var schema: [String: WeightSpec] = [:]

    init(store: TensorStore, layout: ModelLayout, config: DebertaConfig, file: String, precision: RuntimeOptions.Precision = .f32) throws {
        self.file = file
        self.config = config
        self.precision = precision
        isRecording = false
        quantization = try QuantizationInfo.read(store)
        for t in store.tensors {
            let name = TensorNaming.unprefixed(TensorNaming.canonical(t.name, layout: layout))
            views[name] = t
            sourceNames[name] = t.name
        }
    }

    /// A binder that records the schema of `config` and binds nothing.
    init(recording config: DebertaConfig) {
        file = "(schema)"
        self.config = config
        precision = .f32
        isRecording = true
        quantization = nil
    }

    func has(_ name: String) -> Bool { isRecording || views[name] != nil }

    private func note(_ name: String, _ shape: [Int], _ role: WeightSpec.Role, keepsInt8: Bool = false) {
        schema[name] = WeightSpec(shape: shape, role: role, keepsInt8: keepsInt8)
    }

    func tensor(_ name: String, _ shape: [Int], optional: Bool = false) -> FloatBuffer? {
        guard !isRecording else {
            note(name, shape, .float)
            return nil
        }
        guard let view = views[name] else {
            if !optional { missing.append(name) }
            return nil
        }
        used.insert(name)
        guard view.shape == shape else {
            misShaped.append("'\(sourceNames[name] ?? name)' is \(view.shape), expected \(shape)")
            return nil
        }
        guard view.dtype.isFloatingPoint else {
            misShaped.append("'\(sourceNames[name] ?? name)' has dtype \(view.dtype.rawValue), expected a float type")
            return nil
        }
        return FloatBuffer(view)
    }

    /// Marks a table as read a few rows at a time (embeddings): no read-around on page faults.
    func adviseRandomAccess(_ name: String) {
        views[name]?.region.adviseRandomAccess()
        views[name + QuantizationScheme.scaleSuffix]?.region.adviseRandomAccess()
    }

    /// A weight matrix [n, k]: f32 (any float dtype) or, in a quantized store, codes + scales.
    func matrix(_ name: String, _ n: Int, _ k: Int, role: WeightSpec.Role, keepsInt8: Bool = false, optional: Bool = false) -> MatrixWeight? {
        guard !isRecording else {
            note(name, [n, k], role, keepsInt8: keepsInt8)
            return nil
        }
        let scaleName = name + QuantizationScheme.scaleSuffix
        guard quantization != nil, let scaleView = views[scaleName] else {
            return tensor(name, [n, k], optional: optional).map { .f32($0) }
        }
        guard let codes = views[name] else {
            if !optional { missing.append(name) }
            return nil
        }
        // Each weight's scheme comes from its codes (a q4 store keeps a few weights in int8).
        let scheme: QuantizationScheme = codes.dtype == .i8 ? .int8 : .q4
        used.insert(name)
        used.insert(scaleName)
        let stored = scheme.storedShapes(n: n, k: k)
        guard codes.dtype == scheme.codeType, codes.shape == stored.codes else {
            misShaped.append("'\(sourceNames[name] ?? name)' is \(codes.dtype.rawValue) \(codes.shape), expected \(scheme.codeType.rawValue) \(stored.codes) for \(scheme.rawValue) [\(n), \(k)]")
            return nil
        }
        guard scaleView.dtype == .f32, scaleView.shape == stored.scales else {
            misShaped.append("'\(sourceNames[scaleName] ?? scaleName)' is \(scaleView.dtype.rawValue) \(scaleView.shape), expected F32 \(stored.scales)")
            return nil
        }
        return .quantized(QuantizedMatrix(scheme: scheme, rows: n, cols: k, codes: codes, scales: FloatBuffer(scaleView)))
    }

    /// Marks tensors that may be present and are not needed (a hub MLM checkpoint's RTD head, buffers).
    func tolerate(where predicate: (String) -> Bool) {
        for name in views.keys where predicate(name) { used.insert(name) }
    }

    /// Throws one `.weightsMismatch` error listing every problem found while binding.
    func finish() throws {
        let unexpected = views.keys.filter { !used.contains($0) }.sorted().map { sourceNames[$0] ?? $0 }
        let mismatch = DebertaError.WeightMismatch(missing: missing, misShaped: misShaped, unexpected: unexpected)
        guard !mismatch.isEmpty else { return }
        func list(_ what: String, _ items: [String], _ separator: String) -> String? {
            items.isEmpty ? nil : "\(what) \(items.count): " + items.prefix(12).joined(separator: separator) + (items.count > 12 ? separator + "..." : "")
        }
        let parts = [list("missing", missing, ", "), list("mis-shaped", misShaped, "; "), list("unexpected", unexpected, ", ")].compactMap { $0 }
        throw DebertaError(.weightsMismatch, file: file, "weights do not fit the config: " + parts.joined(separator: " | "), weights: mismatch)
    }
}

/// A binder seen from one module: names are relative to the module's place in transformers' tree
/// (`scope.child("attention").child("self").linear("query_proj", ...)` binds
/// `encoder.layer.0.attention.self.query_proj.weight`), as candle's VarBuilder does.
struct WeightScope {
    let binder: WeightBinder
    let prefix: String

    init(_ binder: WeightBinder, prefix: String = "") {
        self.binder = binder
        self.prefix = prefix
    }

    var config: DebertaConfig { binder.config }
    var file: String { binder.file }
    var isRecording: Bool { binder.isRecording }

    func child(_ name: String) -> WeightScope { WeightScope(binder, prefix: path(name)) }
    func path(_ leaf: String) -> String { prefix.isEmpty ? leaf : leaf.isEmpty ? prefix : prefix + "." + leaf }
    func has(_ leaf: String) -> Bool { binder.has(path(leaf)) }

    func tensor(_ leaf: String, _ shape: [Int], optional: Bool = false) -> FloatBuffer? {
        binder.tensor(path(leaf), shape, optional: optional)
    }

    func matrix(_ leaf: String, _ n: Int, _ k: Int, role: WeightSpec.Role = .linear, optional: Bool = false) -> MatrixWeight? {
        binder.matrix(path(leaf), n, k, role: role, optional: optional)
    }

    /// transformers' nn.Linear(in, out) named `leaf`: `weight` [out, in] and, with `bias`, `bias` [out].
    func linear(_ leaf: String, out: Int, in inFeatures: Int, bias: Bool = true, keepsInt8: Bool = false) -> Linear? {
        let name = path(leaf)
        var w = binder.matrix(name + ".weight", out, inFeatures, role: .linear, keepsInt8: keepsInt8)
        if case let .f32(buffer)? = w { w = floatLinearWeight(buffer, rows: out, cols: inFeatures) }
        let b = bias ? binder.tensor(name + ".bias", [out]) : nil
        guard let w, !bias || b != nil else { return nil }
        return Linear(weight: w, bias: b, outFeatures: out, inFeatures: inFeatures)
    }

    /// A float linear weight as the products read it. f32: repacked for the GEMM kernel once the model is
    /// reused (PackedMatrix); the mapped original then leaves the resident set (it stays in the page cache,
    /// and in the mapping should anything read it). bf16: converted to bf16 panels now (BF16Matrix).
    func floatLinearWeight(_ buffer: FloatBuffer, rows: Int, cols: Int) -> MatrixWeight {
        binder.precision == .bf16 ? .bf16(BF16Matrix(buffer, rows: rows, cols: cols)) : .packed(PackedMatrix(buffer, rows: rows, cols: cols))
    }

    /// nn.LayerNorm(n) named `leaf`, with the config's layer_norm_eps.
    func norm(_ leaf: String, _ n: Int) -> Norm? {
        let w = tensor(leaf + ".weight", [n]), b = tensor(leaf + ".bias", [n])
        guard let w, let b else { return nil }
        return Norm(weight: w, bias: b, eps: Float(config.layerNormEps))
    }

    /// Tensors below this scope that may be present and are not needed.
    func tolerate(_ leaf: String) {
        let name = path(leaf)
        binder.tolerate { $0 == name || $0.hasPrefix(name + ".") }
    }
}
