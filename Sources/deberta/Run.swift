import ArgumentParser
import Checkpoint
import DeBERTa

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on the input_ids/attention_mask/token_type_ids of a safetensors file and write its outputs.")

    @Argument(help: "A model directory or weights file (config.json beside it).")
    var model: String

    @Option(help: "Safetensors file with input_ids (I64 [B, T], or [B, C, T] for multiple choice), attention_mask, token_type_ids.")
    var inputs: String

    @Option(help: "Where to write the outputs (safetensors, F32).")
    var output: String

    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags

    func validate() throws {
    }

    func run() throws {
        let loaded = try DebertaModel(path: model, options: runtime.options)
        let modelInputs = try InputsFile.read(inputs, for: loaded)
        let result = try loaded.forward(modelInputs)
        let tensors = result.outputs.map { out in
            OutputTensor(name: out.name, dtype: .f32, shape: out.shape) { dst in
                out.values.withUnsafeBytes { dst.copyMemory(from: $0) }
            }
        }
        try SafeTensorsWriter.write(tensors, metadata: [("model", model), ("inputs", inputs), ("producer", "deberta-swift")], to: output)
        for out in result.outputs { print("\(padded(out.name, 20)) \(shapeText(out.shape))") }
        print("wrote \(output)")
    }
}
