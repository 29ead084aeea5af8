import Checkpoint

/// Reads `input_ids`, `attention_mask` and `token_type_ids` from a safetensors file (a reference file
/// is a valid inputs file). Shapes [B, T], or [B, C, T] for multiple choice.
public enum InputsFile {
    public static func read(_ path: String, for model: DebertaModel) throws -> ModelInputs {
        let store = try TensorStore.open(weights: path)
        return try inputs(from: store, file: path, for: model)
    }

    public static func inputs(from store: TensorStore, file: String, for model: DebertaModel) throws -> ModelInputs {
        guard let ids = store["input_ids"] else {
            throw DebertaError(.invalidInput, file: file, "has no 'input_ids' tensor (found: \(store.names.prefix(8).joined(separator: ", ")))")
        }
        let multipleChoice = model.layout.head == .multipleChoice
        let rank = multipleChoice ? 3 : 2
        guard ids.shape.count == rank || (multipleChoice && ids.shape.count == 2) else {
            throw DebertaError(.invalidInput, file: file, tensor: "input_ids", "shape \(ids.shape) must be [batch, length]\(multipleChoice ? " or [batch, choices, length]" : "")")
        }
        func integers(_ view: TensorView) throws -> [Int] {
            guard let values = view.int64s(), view.dtype != .bool || view.name == "attention_mask" else {
                throw DebertaError(.invalidInput, file: file, tensor: view.name, "dtype \(view.dtype.rawValue) is not an integer type (expected I64)")
            }
            return values.map { Int(truncatingIfNeeded: $0) }
        }
        let idValues = try integers(ids)
        var mask: [Int]?
        if let m = store["attention_mask"] {
            guard m.shape == ids.shape else {
                throw DebertaError(.invalidInput, file: file, tensor: "attention_mask", "shape \(m.shape) differs from input_ids \(ids.shape)")
            }
            mask = try integers(m)
        }
        var types: [Int]?
        if let t = store["token_type_ids"] {
            guard t.shape == ids.shape else {
                throw DebertaError(.invalidInput, file: file, tensor: "token_type_ids", "shape \(t.shape) differs from input_ids \(ids.shape)")
            }
            types = try integers(t)
        }
        let length = ids.shape.last!
        let sequences = ids.shape.dropLast().reduce(1, *)
        let choices = multipleChoice ? (ids.shape.count == 3 ? ids.shape[1] : 1) : nil
        let inputs = ModelInputs(inputIds: idValues, attentionMask: mask, tokenTypeIds: types, batch: sequences, length: length, choices: choices)
        try model.validate(inputs, file: file)
        return inputs
    }
}
