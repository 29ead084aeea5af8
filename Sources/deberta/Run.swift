import ArgumentParser
import Checkpoint
import DeBERTa
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on the input_ids/attention_mask/token_type_ids of a safetensors file and write its outputs.")

    @Argument(help: "A model directory or weights file (config.json beside it).")
    var model: String

    @Option(help: "Safetensors file with input_ids (I64 [B, T], or [B, C, T] for multiple choice), attention_mask, token_type_ids; - reads standard input.")
    var inputs: String

    @Option(help: "Where to write the outputs (safetensors, F32); - writes them to standard output.")
    var output: String

    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags

    func validate() throws {
    }

    func run() throws {
        try InputFile.checkModel(model)
        if inputs != "-" { try InputFile.check(inputs, dashAllowed: true) }
        try FileOutput.check(output)
        if output == "-" && isatty(1) != 0 {
            throw DebertaError(.io, file: "standard output", "is a terminal; --output - writes binary safetensors: redirect it to a file or a pipe")
        }
        let loaded = try DebertaModel(path: model, options: runtime.options)
        runtime.noteEmulatedBF16(loaded)
        let inputsName = InputFile.name(inputs)
        let store = inputs == "-"
            ? try TensorStore.read(ByteRegion(storage: .copy(try InputFile.readAll(inputs, limit: IOLimits.maxStandardInputBytes, what: "the inputs"))), file: inputsName)
            : try TensorStore.open(weights: inputs)
        try IOLimits.checkForward(inputsOf: store, model: loaded, file: inputsName)
        let modelInputs = try InputsFile.inputs(from: store, file: inputsName, for: loaded)
        let result = try loaded.forward(modelInputs)
        let tensors = result.outputs.map { out in
            OutputTensor(name: out.name, dtype: .f32, shape: out.shape) { dst in
                out.values.withUnsafeBytes { dst.copyMemory(from: $0) }
            }
        }
        let metadata = [("model", model), ("inputs", inputs), ("producer", "deberta-swift")]
        if output == "-" {
            // The safetensors bytes are the standard output; the summary goes to standard error.
            try SafeTensorsWriter.write(tensors, metadata: metadata, descriptor: 1, name: "standard output")
            for out in result.outputs { printError("\(padded(out.name, 20)) \(shapeText(out.shape))") }
            return
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: output)
        for out in result.outputs { print("\(padded(out.name, 20)) \(shapeText(out.shape))") }
        print("wrote \(output)")
    }
}
