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

    @Option(help: "Threads for the matrix products.")
    var threads: Int = 2

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    func run() throws {
        setComputeThreads(threads)
        let loaded = try DebertaModel(path: model)
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
