import Checkpoint

/// A checkpoint opened for use: its files, the memory-mapped tensor store, config.json (when there is
/// one) and the detected layout, with the shapes checked against the config.
public struct ModelCheckpoint: Sendable {
    public let files: ModelFiles
    public let store: TensorStore
    public let config: DebertaConfig?
    public let layout: ModelLayout

    /// `path` is a weights file, a sharded index, or a model directory.
    public static func open(_ path: String, trace: Trace = .off) throws -> ModelCheckpoint {
        trace.mark("open \(path)")
        let files = try ModelFiles.resolve(path)
        let config = try files.config.map { try DebertaConfig.load(path: $0) }
        let store = try TensorStore.open(weights: files.weights)
        let layout = try ModelDetector.detect(names: store.names, config: config, configFile: files.config, weightsFile: files.weights)
        if let config {
            let schema = WeightSchema(config: config, layout: layout)
            // Quantized weights are checked by their logical [N, K] shape (the codes' shape differs for q4).
            let logical = try QuantizationInfo.read(store)?.shapes ?? [:]
            let problems = schema.mismatches(store.tensors.map { (TensorNaming.canonical($0.name, layout: layout), logical[$0.name] ?? $0.shape) })
            if !problems.isEmpty {
                let shown = problems.prefix(8).joined(separator: "; ")
                let more = problems.count > 8 ? " (and \(problems.count - 8) more)" : ""
                throw DebertaError(.weightsMismatch, file: files.weights, "shapes disagree with \(files.config ?? "config.json"): \(shown)\(more)")
            }
        }
        return ModelCheckpoint(files: files, store: store, config: config, layout: layout)
    }
}
