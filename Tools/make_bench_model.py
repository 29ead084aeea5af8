#!/usr/bin/env python3
"""Create a random DeBERTa-v3-base-shaped masked-LM checkpoint for benchmarks (outside the repo).

Usage:

    $(Tools/reference_env.sh) Tools/make_bench_model.py                  # default location
    $(Tools/reference_env.sh) Tools/make_bench_model.py --out DIR --onnx # also ONNX f32 + int8
    $(Tools/reference_env.sh) Tools/make_bench_model.py --encoder-onnx   # only the encoder ONNX files,
                                                                          # from the existing DIR/safetensors

Writes (default DIR = $HOME/.cache/deberta-swift/bench/v3-base):

    DIR/safetensors/config.json, DIR/safetensors/model.safetensors   (f32, single file)
    DIR/bin/config.json,         DIR/bin/pytorch_model.bin           (f32, single PyTorch zip)
    DIR/onnx/model.onnx, DIR/onnx/model.int8.onnx                    (with --onnx: masked LM, output
                                                                      `logits` [batch, seq, 128100])
    DIR/onnx/encoder.onnx, DIR/onnx/encoder.int8.onnx                (with --onnx or --encoder-onnx:
                                                                      DebertaV2Model, output
                                                                      `last_hidden_state` [batch, seq, 768])
    DIR/README.txt                                                   (what was written, how)

Shape: DebertaV2ForMaskedLM, 12 layers, hidden 768, 12 heads, FFN 3072, vocab 128100,
max_position_embeddings 512, position_buckets 256, max_relative_positions -1, share_att_key,
norm_rel_ebd layer_norm, pos_att_type p2c|c2p, position_biased_input false, legacy false (head
`lm_predictions.lm_head.*`), plus `deberta.embeddings.position_embeddings.weight` [512, 768] as hub
checkpoints ship it (transformers ignores it; the EMD uses it). Weights: N(0, 0.02) for matrices and
embeddings, zero biases, LayerNorm weight 1 / bias 0 (deterministic, seed 0). About 185 M parameters,
~740 MB per f32 file.

The encoder exports are what Tools/bench_peers.py times against `deberta bench --encoder-only`: the same
computation (embeddings + 12 layers, no MLM head over the 128,100-token vocabulary). Both ONNX pairs are
exported with torch.onnx (TorchScript exporter, opset 18, dynamic batch and sequence axes), checked against
torch, and quantized with onnxruntime.quantization.quantize_dynamic(weight_type=QInt8) and its defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import fixtures

try:
    import torch
    import transformers
    from torch import nn
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    from fixtures.common import (
        POSITION_TABLE,
        REPO,
        log,
        normal_init,
        quiet_transformers,
        save_bin_pretrained,
        save_safetensors_pretrained,
        v3_config,
    )
except ImportError as exc:  # pragma: no cover - environment problem
    fixtures.missing_package(exc)

DEFAULT_OUT = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "deberta-swift" / "bench" / "v3-base"


def bench_config(tiny: bool = False) -> DebertaV2Config:
    """DeBERTa-v3-base (the fixtures' v3 shape at full size); tiny: same features, small sizes."""
    if tiny:  # smoke-test shape (--tiny)
        sizes = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=128, position_buckets=64)
    else:
        sizes = dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, max_position_embeddings=512, position_buckets=256)
    return v3_config(**sizes, initializer_range=0.02, pad_token_id=0)


def init_weights(model: nn.Module, seed: int) -> None:
    """N(0, 0.02) for matrices and embeddings, zero biases, LayerNorm weight 1 / bias 0."""
    normal_init(model, seed, std=0.02)


def under_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO)
        return True
    except ValueError:
        return False


def write_safetensors(model, position_table, directory: Path) -> None:
    """Single-file f32 safetensors (save_pretrained) plus the position table."""
    save_safetensors_pretrained(model, directory, max_shard_size="100GB", extra={POSITION_TABLE: position_table})


def write_bin(model, position_table, directory: Path) -> None:
    """Single-file PyTorch zip as transformers 4.x save_pretrained(safe_serialization=False) wrote it
    (transformers 5.x writes safetensors only), plus the position table."""
    save_bin_pretrained(model, directory, extra={POSITION_TABLE: position_table})


class _Encoder(nn.Module):
    """DebertaV2Model returning last_hidden_state alone (one named ONNX output)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.deberta = encoder

    def forward(self, input_ids, attention_mask):
        return self.deberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model, directory: Path, seq: int, stem: str = "model", output: str = "logits") -> None:
    """f32 export with the TorchScript-based exporter (dynamo=False; dynamic batch and sequence axes),
    checked against torch at two lengths, then int8 weights via onnxruntime quantize_dynamic(QInt8).
    `model` maps (input_ids, attention_mask) to a tensor or to an output with `.logits`; it is written to
    DIR/<stem>.onnx and DIR/<stem>.int8.onnx with the one output named `output`."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        sys.exit(f"--onnx needs onnx and onnxruntime ({exc}); use $(Tools/reference_env.sh)")
    import warnings

    def reference(x, m):
        out = model(x, attention_mask=m)
        return (out if isinstance(out, torch.Tensor) else out.logits).numpy()

    directory.mkdir(parents=True, exist_ok=True)
    f32 = directory / f"{stem}.onnx"
    int8 = directory / f"{stem}.int8.onnx"
    vocab = model.deberta.config.vocab_size if isinstance(model, _Encoder) else model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (1, seq), generator=g)
    mask = torch.ones_like(ids)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(f32),
            input_names=["input_ids", "attention_mask"],
            output_names=[output],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                output: {0: "batch", 1: "sequence"},
            },
            opset_version=18,
            dynamo=False,
        )
    log(f"  onnx f32 export ({f32.name}, output {output}): {time.time() - t0:.1f}s, {f32.stat().st_size / 1e6:.0f} MB")
    session = ort.InferenceSession(str(f32), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [output], session.get_outputs()
    for T in (seq // 2, seq + 8):
        x = torch.randint(4, vocab, (2, T), generator=g)
        m = torch.ones_like(x)
        m[1, T // 2 :] = 0
        got = session.run(None, {"input_ids": x.numpy(), "attention_mask": m.numpy()})[0]
        with torch.no_grad():
            want = reference(x, m)
        err = float(np.abs(got - want)[m.numpy().astype(bool)].max())
        log(f"  onnx f32 vs torch at T={T}: max abs diff {err:.2e}")
        assert err < 1e-3, err
    del session
    t0 = time.time()
    quantize_dynamic(str(f32), str(int8), weight_type=QuantType.QInt8)
    log(f"  onnx int8 ({int8.name}, quantize_dynamic QInt8): {time.time() - t0:.1f}s, {int8.stat().st_size / 1e6:.0f} MB")


def export_encoder_onnx(mlm, directory: Path, seq: int) -> None:
    """DIR/encoder.onnx + DIR/encoder.int8.onnx: the DebertaV2Model inside the masked LM (no head)."""
    export_onnx(_Encoder(mlm.deberta).eval(), directory, seq, stem="encoder", output="last_hidden_state")


def encoder_onnx_from_existing(out: Path, seq: int) -> int:
    """--encoder-onnx: load DIR/safetensors (as written by this script) and export only the encoder."""
    src = out / "safetensors"
    if not (src / "model.safetensors").exists():
        sys.exit(f"--encoder-onnx needs {src}/model.safetensors; run without --encoder-onnx first")
    t0 = time.time()
    mlm = DebertaV2ForMaskedLM.from_pretrained(str(src)).eval()
    log(f"loaded {src} in {time.time() - t0:.1f}s")
    export_encoder_onnx(mlm, out / "onnx", seq)
    readme = out / "README.txt"
    line = ("onnx/: encoder.onnx (f32 DebertaV2Model, inputs input_ids/attention_mask int64 [batch, sequence],"
            " output last_hidden_state) + encoder.int8.onnx (onnxruntime quantize_dynamic, QInt8 weights)\n")
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if line not in text:
        readme.write_text(text + line, encoding="utf-8")
    log(f"done: {out / 'onnx'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--onnx", action="store_true",
                    help="also export ONNX f32 and dynamic int8 into DIR/onnx/ (masked LM and encoder alone)")
    ap.add_argument("--encoder-onnx", action="store_true",
                    help="only export DIR/onnx/encoder{,.int8}.onnx from the existing DIR/safetensors")
    ap.add_argument("--onnx-seq", type=int, default=128, help="sequence length used to trace the ONNX export")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="small model with the same features (smoke test)")
    ap.add_argument("--force", action="store_true", help="allow --out inside the repository")
    args = ap.parse_args(argv)

    out = args.out.expanduser()
    if under_repo(out) and not args.force:
        sys.exit(f"refusing to write {out} inside the repository (use a directory outside, or --force)")
    quiet_transformers()
    if args.encoder_onnx:
        return encoder_onnx_from_existing(out, args.onnx_seq)

    cfg = bench_config(tiny=args.tiny)
    t0 = time.time()
    torch.manual_seed(args.seed)
    model = DebertaV2ForMaskedLM(cfg).eval()
    init_weights(model, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    position_table = torch.randn(cfg.max_position_embeddings, cfg.hidden_size, generator=g) * 0.02
    n_params = sum(p.numel() for p in model.parameters()) + position_table.numel()
    log(f"model: {n_params / 1e6:.1f} M parameters (with the position table), built in {time.time() - t0:.1f}s")

    t0 = time.time()
    write_safetensors(model, position_table, out / "safetensors")
    log(f"  {out / 'safetensors' / 'model.safetensors'}: {(out / 'safetensors' / 'model.safetensors').stat().st_size / 1e6:.0f} MB ({time.time() - t0:.1f}s)")
    t0 = time.time()
    write_bin(model, position_table, out / "bin")
    log(f"  {out / 'bin' / 'pytorch_model.bin'}: {(out / 'bin' / 'pytorch_model.bin').stat().st_size / 1e6:.0f} MB ({time.time() - t0:.1f}s)")
    if args.onnx:
        export_onnx(model, out / "onnx", args.onnx_seq)
        export_encoder_onnx(model, out / "onnx", args.onnx_seq)

    (out / "README.txt").write_text(
        "Random DeBERTa-v3-base-shaped DebertaV2ForMaskedLM for benchmarks (not a trained model).\n"
        f"Made by Tools/make_bench_model.py (seed {args.seed}{', tiny' if args.tiny else ''}) with "
        f"torch {torch.__version__}, transformers {transformers.__version__}.\n"
        "safetensors/: config.json + model.safetensors (f32, single file)\n"
        "bin/: config.json + pytorch_model.bin (f32, single PyTorch zip)\n"
        + ("onnx/: model.onnx (f32, inputs input_ids/attention_mask int64 [batch, sequence], output logits)"
           " + model.int8.onnx (onnxruntime quantize_dynamic, QInt8 weights)\n"
           "onnx/: encoder.onnx (f32 DebertaV2Model, inputs input_ids/attention_mask int64 [batch, sequence],"
           " output last_hidden_state) + encoder.int8.onnx (onnxruntime quantize_dynamic, QInt8 weights)\n"
           if args.onnx else "")
        + f"Both checkpoints also hold {POSITION_TABLE} [{cfg.max_position_embeddings}, {cfg.hidden_size}].\n"
        + "config: " + json.dumps(json.loads((out / "safetensors" / "config.json").read_text()), sort_keys=True) + "\n",
        encoding="utf-8",
    )
    log(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
