import CQuantKernels
import Checkpoint
#if canImport(Glibc)
import Glibc
#endif

/// Typed weights of one encoder layer (modeling_deberta_v2.DebertaV2Layer / modeling_deberta.DebertaLayer).
struct LayerWeights: Sendable {
    // Attention projections [A, H]. For v1 they are the per-head split of in_proj; key has no bias.
    var query: Linear
    var key: Linear
    var value: Linear
    /// Position projections applied to the relative table (c2p uses the key side, p2c the query side).
    var positionKey: Linear?
    var positionQuery: Linear?
    var attentionOutput: Linear  // [H, A]
    var attentionNorm: Norm
    var intermediate: Linear  // [I, H]
    var output: Linear  // [H, I]
    var outputNorm: Norm
}

struct EmbeddingWeights: Sendable {
    var word: MatrixWeight  // [V, E], quantized only with --quantize-embeddings
    var position: FloatBuffer?  // [P, E], also the EMD's absolute table
    var tokenType: FloatBuffer?  // [typeVocab, E]
    var projection: Linear?  // embed_proj [H, E], no bias
    var norm: Norm
}

/// encoder.conv (v2 with conv_kernel_size > 0), kept as K dense [H, H] matrices (groups expanded).
struct ConvWeights: Sendable {
    var kernels: [MatrixWeight]
    var bias: FloatBuffer
    var norm: Norm
    var activation: Activation
}

enum HeadWeights: Sendable {
    case none
    /// dense → act → LayerNorm → × decoderᵀ + bias. Non-legacy heads decode with the word embeddings.
    case maskedLM(dense: Linear, norm: Norm, decoder: MatrixWeight, bias: FloatBuffer)
    case pooled(pooler: Linear, classifier: Linear)  // sequence classification and multiple choice
    case tokenClassifier(Linear)
    case questionAnswering(Linear)  // [2, H]
    case replacedTokenDetection(dense: Linear, norm: Norm, classifier: Linear)
}

/// Binds tensors by transformers name, checking shapes, and reports every missing, unexpected or
/// mis-shaped tensor in one error instead of stopping at the first.
struct WeightBinder {
    let file: String
    let config: DebertaConfig
    private var views: [String: TensorView] = [:]
    private var sourceNames: [String: String] = [:]
    private(set) var used = Set<String>()
    private var missing: [String] = []
    private var misshaped: [String] = []

    let quantization: QuantizationInfo?

    init(store: TensorStore, layout: ModelLayout, config: DebertaConfig, file: String) throws {
        self.file = file
        self.config = config
        quantization = try QuantizationInfo.read(store)
        for t in store.tensors {
            let name = TensorNaming.unprefixed(TensorNaming.canonical(t.name, layout: layout))
            views[name] = t
            sourceNames[name] = t.name
        }
    }

    func has(_ name: String) -> Bool { views[name] != nil }

    mutating func tensor(_ name: String, _ shape: [Int], optional: Bool = false) -> FloatBuffer? {
        guard let view = views[name] else {
            if !optional { missing.append(name) }
            return nil
        }
        used.insert(name)
        guard view.shape == shape else {
            misshaped.append("'\(sourceNames[name] ?? name)' is \(view.shape), expected \(shape)")
            return nil
        }
        guard view.dtype.isFloatingPoint else {
            misshaped.append("'\(sourceNames[name] ?? name)' has dtype \(view.dtype.rawValue), expected a float type")
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
    mutating func matrix(_ name: String, _ n: Int, _ k: Int, optional: Bool = false) -> MatrixWeight? {
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
        let (codeShape, scaleShape) = scheme.storedShapes(n: n, k: k)
        guard codes.dtype == scheme.codeType, codes.shape == codeShape else {
            misshaped.append("'\(sourceNames[name] ?? name)' is \(codes.dtype.rawValue) \(codes.shape), expected \(scheme.codeType.rawValue) \(codeShape) for \(scheme.rawValue) [\(n), \(k)]")
            return nil
        }
        guard scaleView.dtype == .f32, scaleView.shape == scaleShape else {
            misshaped.append("'\(sourceNames[scaleName] ?? scaleName)' is \(scaleView.dtype.rawValue) \(scaleView.shape), expected F32 \(scaleShape)")
            return nil
        }
        return .quantized(QuantizedMatrix(scheme: scheme, rows: n, cols: k, codes: codes, scales: FloatBuffer(scaleView)))
    }

    mutating func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool = true) -> Linear? {
        var w = matrix(name + ".weight", out, inFeatures)
        // f32 linear weights are repacked for the GEMM kernel once the model is reused (PackedMatrix); the
        // mapped original then leaves the resident set (it stays in the page cache, and in the mapping should
        // anything read it).
        if case let .f32(buffer)? = w {
            w = .packed(PackedMatrix(buffer, rows: out, cols: inFeatures))
        }
        let b = bias ? tensor(name + ".bias", [out]) : nil
        guard let w, !bias || b != nil else { return nil }
        return Linear(weight: w, bias: b, outFeatures: out, inFeatures: inFeatures)
    }

    mutating func norm(_ name: String, _ n: Int) -> Norm? {
        let w = tensor(name + ".weight", [n])
        let b = tensor(name + ".bias", [n])
        guard let w, let b else { return nil }
        return Norm(weight: w, bias: b, eps: Float(config.layerNormEps))
    }

    /// Marks tensors that may be present and are not needed (a hub MLM checkpoint's RTD head, buffers).
    mutating func tolerate(where predicate: (String) -> Bool) {
        for name in views.keys where predicate(name) { used.insert(name) }
    }

    func finish() throws {
        let unexpected = views.keys.filter { !used.contains($0) }.sorted().map { sourceNames[$0] ?? $0 }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing \(missing.count): " + missing.prefix(12).joined(separator: ", ") + (missing.count > 12 ? ", ..." : "")) }
        if !misshaped.isEmpty { parts.append("mis-shaped \(misshaped.count): " + misshaped.prefix(12).joined(separator: "; ") + (misshaped.count > 12 ? "; ..." : "")) }
        if !unexpected.isEmpty { parts.append("unexpected \(unexpected.count): " + unexpected.prefix(12).joined(separator: ", ") + (unexpected.count > 12 ? ", ..." : "")) }
        if !parts.isEmpty {
            throw DebertaError(.weightsMismatch, file: file, "weights do not fit the config: " + parts.joined(separator: " | "))
        }
    }
}
