import CKernels
import Checkpoint

/// transformers' ACT2FN names this runtime implements.
enum Activation: String, Sendable {
    case gelu, geluNew = "gelu_new", geluPytorchTanh = "gelu_pytorch_tanh", geluFast = "gelu_fast"
    case quickGelu = "quick_gelu", relu, tanh, silu, swish, sigmoid, mish, linear

    init(name: String, field: String, file: String) throws {
        guard let a = Activation(rawValue: name.lowercased()) else {
            throw DebertaError(.unsupported, file: file, "\(field) '\(name)' is not an activation this runtime implements (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, tanh, silu, swish, sigmoid, mish, linear)")
        }
        self = a
    }

    var kernel: dk_activation {
        switch self {
        case .gelu: return DK_ACT_GELU
        case .geluNew, .geluPytorchTanh: return DK_ACT_GELU_TANH
        case .geluFast: return DK_ACT_GELU_FAST
        case .quickGelu: return DK_ACT_QUICK_GELU
        case .relu: return DK_ACT_RELU
        case .tanh: return DK_ACT_TANH
        case .silu, .swish: return DK_ACT_SILU
        case .sigmoid: return DK_ACT_SIGMOID
        case .mish: return DK_ACT_MISH
        case .linear: return DK_ACT_IDENTITY
        }
    }
}
