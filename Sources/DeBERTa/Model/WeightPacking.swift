extension DebertaModel {
    /// Repacks the f32 weight matrices (and, where the CPU has the packed int8/q4 kernels, the quantized
    /// codes) into the kernels' panel layout now; a no-op for those already packed. A model packs them by
    /// itself when its second call starts (`RuntimeOptions.packing == .reuse`): packing costs about as much as
    /// one call over a few hundred tokens (reading every weight, and the page faults of the packed copy),
    /// which a single call would never earn back. Call this after loading to have the first call at full
    /// speed instead. The outputs are the same bits either way. With `.never` this does nothing.
    public func prepareForRepeatedCalls() {
        guard options.packing != .never else { return }
        options.trace.mark("packing weights")
        compute.run { for matrix in packableMatrices { matrix.pack() } }
        options.trace.mark("packed")
    }

    /// Counts a call; the second packs the weights (packing `.reuse`).
    func noteCall() {
        let n = calls.wrappingAdd(1, ordering: .relaxed).newValue
        if n == 2 && options.packing == .reuse { prepareForRepeatedCalls() }
    }

    /// Every matrix the products read that can be packed (shared ones, e.g. share_att_key, once is enough:
    /// pack() is idempotent). Not the MLM decoder: it is the word-embedding table (or its copy), the largest
    /// matrix of the model, multiplied a chunk of the vocabulary at a time instead of being packed whole.
    var packableMatrices: [any PackableWeight] {
        let linears = [embeddings.projection] + encoder.layers.flatMap(\.linears) + head.linears
        let matrices = linears.map { $0?.weight } + (encoder.conv?.kernels ?? []).map { Optional($0) }
        return matrices.compactMap { w -> (any PackableWeight)? in
            switch w {
            case let .packed(p)?: return p
            case let .quantized(q)? where q.usesPackedKernel: return q
            default: return nil
            }
        }
    }
}
