import Checkpoint

/// The weights a config and layout call for, in transformers' names without the backbone prefix: recorded
/// by running the modules' own binding code with a recording binder, so the shapes the runtime checks,
/// the shapes `inspect` and `convert` check and the weights the converter quantizes come from one place.
public struct WeightSchema: Sendable {
    public let specs: [String: WeightSpec]
    public let layers: Int

    public init(config: DebertaConfig, layout: ModelLayout) {
        let binder = WeightBinder(recording: config)
        _ = try? DebertaModel.bind(WeightScope(binder), layout: layout)
        specs = binder.schema
        layers = config.numHiddenLayers
    }

    /// Every disagreement between the tensors (canonical names, logical shapes) and the schema, one phrase each.
    public func mismatches(_ tensors: [(name: String, shape: [Int])]) -> [String] {
        tensors.compactMap { name, shape in
            let key = TensorNaming.unprefixed(name)
            if key.hasPrefix("encoder.layer."), let l = Int(key.dropFirst("encoder.layer.".count).prefix { $0.isNumber }), l >= layers {
                return "'\(name)' belongs to layer \(l) but num_hidden_layers is \(layers)"
            }
            guard let expected = specs[key]?.shape, expected != shape else { return nil }
            return "'\(name)' has shape \(shape) but config.json implies \(expected)"
        }
    }

    /// The scheme the converter stores a weight in when it quantizes to `scheme`: linear weights (q4 keeps
    /// the MLM transform in int8), the word embeddings only with `embeddings`; nil keeps it float (biases,
    /// LayerNorms, position tables, token types, the conv layer, anything the schema does not name).
    public func quantization(of unprefixed: String, scheme: QuantizationScheme, embeddings: Bool) -> QuantizationScheme? {
        guard let spec = specs[unprefixed] else { return nil }
        switch spec.role {
        case .linear: return spec.keepsInt8 && scheme == .q4 ? .int8 : scheme
        case .embedding: return embeddings ? scheme : nil
        case .float: return nil
        }
    }
}
