import ArgumentParser
import Checkpoint
import DeBERTa

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's format, family, head and tensors without reading the weights.")

    @Argument(help: "A weights file (.safetensors, .bin, *.index.json) or a model directory.")
    var path: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        try InputFile.checkModel(path)
        let model = try InspectedCheckpoint.open(path)
        let store = model.store
        if json {
            print(InspectReport.json(path: path, model: model).serialized())
            return
        }
        print(path)
        print("  format      \(store.format.rawValue)")
        for (i, f) in store.files.enumerated() { print("  \(i == 0 ? "files " : "      ")      \(f)") }
        print("  config      \(model.files.config ?? "none (family and head from tensor names)")")
        if let layout = model.layout {
            print("  family      \(layout.family.rawValue) (from \(layout.familySource))")
            print("  head        \(layout.head.rawValue) (from \(layout.headSource))")
        } else {
            print("  family      unknown (not a DeBERTa checkpoint: \(model.notDeBERTa ?? ""))")
        }
        if let arch = model.architecture { print("  class       \(arch)") }
        print("  tensors     \(grouped(store.tensors.count))")
        print("  parameters  \(grouped(store.parameterCount))")
        print("  bytes       \(grouped(store.byteCount))")
        if !store.skipped.isEmpty { print("  non-tensor  \(store.skipped.joined(separator: ", "))") }
        print("")
        let width = max(4, store.tensors.map(\.name.count).max() ?? 0) + 2
        print(padded("name", width) + padded("dtype", 9) + "shape")
        for t in store.tensors {
            print(padded(t.name, width) + padded(t.dtype.rawValue, 9) + shapeText(t.shape))
        }
    }
}

/// What inspect shows: a DeBERTa checkpoint fully checked against its config, or, for a weights file
/// without config.json that is not DeBERTa, just its tensors.
struct InspectedCheckpoint {
    var files: ModelFiles
    var store: TensorStore
    var layout: ModelLayout?
    var architecture: String?
    var notDeBERTa: String?

    static func open(_ path: String) throws -> InspectedCheckpoint {
        let files = try ModelFiles.resolve(path)
        if files.config != nil {
            let model = try ModelCheckpoint.open(path)
            return InspectedCheckpoint(files: model.files, store: model.store, layout: model.layout,
                                       architecture: model.config?.architectures?.first ?? model.layout.architecture)
        }
        let store = try TensorStore.open(weights: files.weights)
        do {
            let layout = try ModelDetector.detect(names: store.names, config: nil, configFile: nil, weightsFile: files.weights)
            return InspectedCheckpoint(files: files, store: store, layout: layout, architecture: layout.architecture)
        } catch let error as DebertaError {
            return InspectedCheckpoint(files: files, store: store, layout: nil, architecture: nil, notDeBERTa: error.message)
        }
    }
}

enum InspectReport {
    static func json(path: String, model: InspectedCheckpoint) -> JSONValue {
        let store = model.store
        let layout = model.layout
        let tensors: [JSONValue] = store.tensors.map { t in
            .object([
                ("name", .string(t.name)),
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .int($0) })),
            ])
        }
        return .object([
            ("path", .string(path)),
            ("format", .string(store.format.rawValue)),
            ("files", .array(store.files.map { .string($0) })),
            ("config", model.files.config.map { .string($0) } ?? .null),
            ("family", layout.map { .string($0.family.rawValue) } ?? .null),
            ("head", layout.map { .string($0.head.rawValue) } ?? .null),
            ("architecture", model.architecture.map { .string($0) } ?? .null),
            ("backbone_prefix", layout.map { .string($0.backbonePrefix) } ?? .null),
            ("parameters", .int(store.parameterCount)),
            ("bytes", .int(store.byteCount)),
            ("skipped", .array(store.skipped.map { .string($0) })),
            ("tensors", .array(tensors)),
        ])
    }
}
