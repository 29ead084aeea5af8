#!/usr/bin/env python3
"""Random differential check: transformers (float64) against `deberta run` (f32) on random tiny models.

Usage:

    swift build -c release --product deberta
    $(Tools/reference_env.sh) Tools/differential.py --count 200                    # seeds 0 ..< 200
    $(Tools/reference_env.sh) Tools/differential.py --start 500 --lengths 40,150,300 -- --kernels avx2

Each seed draws a configuration the fixtures do not hold: family (deberta-v2 or v1), heads and head size,
layers, FFN width, activation, LayerNorm epsilon, absolute and/or relative positions, pos_att_type,
position_buckets, max_relative_positions, share_att_key, norm_rel_ebd, embedding_size, the conv layer,
token types, and a head (masked LM, sequence / token classification, QA, multiple choice). It saves the
random model with save_pretrained (outside the repository), runs transformers' model in float64 on random
padded rows (v1 with true float64 LayerNorms, as Tools/fixtures/models.py), runs `deberta run` with the
arguments after `--`, and compares every output on the attended rows: max |difference| ≤ --tolerance ×
max(1, max |reference|). A v1 `p2p` draw must be refused with an error naming config.json (counted
apart). Quantized, a seed whose outputs differ but match the simulation with 1e-7 to 1e-6 relative
noise on the quantized inputs (one activation a few ulps from an int8 rounding boundary) is counted apart as a
rounding flip. `--convert DTYPE` runs the converted model instead: for int8 and q4 against
transformers' model with the runtime's quantized products simulated (Tools/fixtures/quantized.py), for
f16/bf16 stores against the float64 model of the unrounded weights (raise --tolerance to match). Prints one line per failing seed and a summary; exits 1 on any failure.

Nothing here is a fixture: the models live in --work (default a temporary directory) and are removed, but
a failing seed's model and inputs are kept there (the line names the directory).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures.common import load_f64, normal_init, quiet_transformers, read_st, save_st  # noqa: E402
from fixtures.models import float64_v1_layernorm  # noqa: E402
from fixtures.quantized import quantized_linears  # noqa: E402
from transformers import (  # noqa: E402
    DebertaConfig,
    DebertaForMaskedLM,
    DebertaForQuestionAnswering,
    DebertaForSequenceClassification,
    DebertaForTokenClassification,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
)

CLASSES = {
    ("mlm", False): DebertaV2ForMaskedLM, ("seq", False): DebertaV2ForSequenceClassification,
    ("tok", False): DebertaV2ForTokenClassification, ("qa", False): DebertaV2ForQuestionAnswering,
    ("mc", False): DebertaV2ForMultipleChoice, ("mlm", True): DebertaForMaskedLM,
    ("seq", True): DebertaForSequenceClassification, ("tok", True): DebertaForTokenClassification,
    ("qa", True): DebertaForQuestionAnswering,
}
SHOWN = ["hidden_size", "num_attention_heads", "hidden_act", "relative_attention", "position_biased_input",
         "max_relative_positions", "position_buckets", "pos_att_type", "share_att_key", "norm_rel_ebd",
         "embedding_size", "conv_kernel_size", "type_vocab_size", "max_position_embeddings"]


def random_config(rng: random.Random):
    """(config, is_v1) of one draw."""
    v1 = rng.random() < 0.3
    heads = rng.choice([1, 2, 3, 4, 6])
    H = heads * rng.choice([8, 12, 16, 20])
    kw = dict(vocab_size=rng.choice([50, 120, 301]), hidden_size=H, num_hidden_layers=rng.choice([1, 2, 3]),
              num_attention_heads=heads, intermediate_size=rng.choice([H, 2 * H + 5, 4 * H]),
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
              layer_norm_eps=rng.choice([1e-7, 1e-5, 1e-12]),
              hidden_act=rng.choice(["gelu", "gelu", "gelu_new", "relu", "tanh", "gelu_pytorch_tanh", "silu"]),
              max_position_embeddings=rng.choice([40, 64, 512]), type_vocab_size=rng.choice([0, 2]), pad_token_id=0,
              pooler_hidden_act=rng.choice(["gelu", "tanh"]), pooler_dropout=0.0)
    relative = rng.random() < 0.85
    kw["relative_attention"] = relative
    kw["position_biased_input"] = (not relative) or rng.random() < 0.3
    kw["max_relative_positions"] = rng.choice([-1, 8, 16, 33, 128])
    kw["pos_att_type"] = rng.choice([["c2p", "p2c"], ["c2p"], ["p2c"], ["p2c", "c2p"]] + ([["c2p", "p2c", "p2p"]] if v1 else []))
    if rng.random() < 0.5:
        kw["pooler_hidden_size"] = H
    if v1:
        return DebertaConfig(**kw), True
    kw["position_buckets"] = rng.choice([-1, 8, 16, 32, 256])
    kw["share_att_key"] = rng.random() < 0.6
    kw["norm_rel_ebd"] = rng.choice(["layer_norm", "none"])
    if rng.random() < 0.25:
        kw["embedding_size"] = rng.choice([H // 2 if H >= 16 else H + 4, H + 8])
    if rng.random() < 0.25:
        kw.update(conv_kernel_size=rng.choice([1, 3, 5]), conv_act=rng.choice(["gelu", "tanh", "relu"]), conv_groups=1)
    return DebertaV2Config(**kw), False


def check_seed(seed: int, args, work: Path) -> str:
    """'ok', 'refused' (a p2p draw refused as it must be) or a failure description."""
    rng = random.Random(seed)
    cfg, v1 = random_config(rng)
    head = rng.choice(["mlm", "seq", "tok", "qa"] + ([] if v1 else ["mc"]))
    cls = CLASSES[(head, v1)]
    if head in ("seq", "tok"):
        cfg.num_labels = rng.choice([1, 2, 3, 5])
    d = work / f"s{seed}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    torch.manual_seed(seed)
    model = cls(cfg)
    normal_init(model, seed, std=rng.choice([0.3, 0.15]), bias_std=0.1, layer_norm_std=0.05)
    model.save_pretrained(d)
    ref = load_f64(cls, d)

    B = rng.choice([1, 2, 3])
    lengths = [rng.randint(1, min(cfg.max_position_embeddings, rng.choice(args.lengths))) for _ in range(B)]
    T = max(lengths)
    shape = (B, 2, T) if head == "mc" else (B, T)
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(shape, dtype=torch.long)
    for b, L in enumerate(lengths):
        mask[b, ..., :L] = 1
    inputs = {"input_ids": torch.randint(1, cfg.vocab_size, shape, generator=g) * mask, "attention_mask": mask}
    if cfg.type_vocab_size > 0:
        inputs["token_type_ids"] = torch.randint(0, cfg.type_vocab_size, shape, generator=g) * mask
    flat = {k: v.view(-1, T) for k, v in inputs.items()}
    quantized = args.convert in ("int8", "q4")

    def reference(model, float64: bool, noise=None) -> dict:
        """The outputs to compare and the rows that count: {name: (values, mask or None)}."""
        simulated = quantized_linears(model, args.convert, noise=noise) if quantized else nullcontext()
        with torch.no_grad(), (float64_v1_layernorm() if v1 and float64 else nullcontext()), simulated:
            base = model.deberta(**flat)
            out = model(**inputs)
        want = {"last_hidden_state": (base.last_hidden_state.double(), flat["attention_mask"])}
        if head == "qa":
            want.update(start_logits=(out.start_logits.double(), mask), end_logits=(out.end_logits.double(), mask))
        else:
            want["logits"] = (out.logits.double(), mask if head in ("mlm", "tok") else None)
        return want

    # Quantized: the simulation in float64, and again in float32, since a last-bit difference upstream can
    # flip an activation's int8 rounding (the runtime's sums are f32): an output passes against either.
    references = [reference(ref, True)] + ([reference(cls.from_pretrained(d, dtype=torch.float32).eval(), False)] if quantized else [])

    desc = f"seed {seed} {cls.__name__} B{B} T{T} lengths {lengths} " + json.dumps({k: getattr(cfg, k, None) for k in SHOWN})
    save_st({k: v.contiguous() for k, v in inputs.items()}, d / "inputs.safetensors")
    target = d
    if args.convert:
        target = d / "converted"
        conv = subprocess.run([args.deberta, "convert", str(d), str(target), "--dtype", args.convert], capture_output=True, text=True)
        if conv.returncode != 0:
            p2p = "p2p" in (cfg.pos_att_type or [])
            if p2p and "p2p" in conv.stderr:
                return "refused"
            return f"{desc}: deberta convert failed: {conv.stderr.strip()[-400:]}"
    run = subprocess.run([args.deberta, "run", str(target), "--inputs", str(d / "inputs.safetensors"),
                          "--output", str(d / "out.safetensors")] + args.run_args, capture_output=True, text=True)
    p2p = "p2p" in (cfg.pos_att_type or [])
    if p2p:
        refused = run.returncode != 0 and "config.json" in run.stderr and "p2p" in run.stderr
        return "refused" if refused else f"{desc}: p2p not refused ({run.returncode}, {run.stderr.strip()[-200:]})"
    if run.returncode != 0:
        return f"{desc} ({d}): deberta run failed: {run.stderr.strip()[-400:]}"
    got = read_st(d / "out.safetensors")[0]

    def compare(references) -> list:
        problems = []
        for name in references[0]:
            if name not in got:
                problems.append(f"{name} missing (outputs {sorted(got)})")
                continue
            errors = []
            for want in references:
                values, rows = want[name]
                value = got[name].double()
                if list(value.shape) != list(values.shape):
                    errors.append(f"{name} shape {list(value.shape)}, transformers {list(values.shape)}")
                    continue
                if rows is not None:
                    keep = rows.reshape(values.shape[: rows.dim()]).bool()
                    values, value = values[keep], value[keep]
                if values.numel() == 0:
                    errors = []
                    break
                err, scale = (values - value).abs().max().item(), values.abs().max().item()
                if err <= args.tolerance * max(1.0, scale):
                    errors = []
                    break
                errors.append(f"{name}: max |difference| {err:.3g} (largest value {scale:.3g})")
            problems += errors[:1]
        return problems

    problems = compare(references)
    if problems and quantized:
        # A code flip: some activation sits within a few f32 ulps of a rounding boundary, and the runtime's f32
        # sums land on the other side. The simulation with 1e-7 to 1e-6 relative noise on every quantized input then
        # reproduces the runtime's outputs within the tolerance for some draws: counted apart, not as a match.
        for k in range(args.flip_draws):
            sigma = (1e-7, 3e-7, 1e-6)[k % 3]
            noisy = reference(ref, True, noise=(torch.Generator().manual_seed(k), sigma))
            if not compare([noisy]):
                shutil.rmtree(d, ignore_errors=True)
                return "flip"
    if not problems:
        shutil.rmtree(d, ignore_errors=True)
    return "ok" if not problems else f"{desc} ({d}): " + "; ".join(problems)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deberta", default=str(Path(__file__).resolve().parent.parent / ".build/release/deberta"))
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[5, 17, 40],
                    help="longest row lengths drawn from (comma-separated; capped by max_position_embeddings)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--flip-draws", type=int, default=18, help="quantized: noisy simulations tried before a seed fails")
    ap.add_argument("--convert", default=None, metavar="DTYPE",
                    help="first `deberta convert --dtype DTYPE` the model (f16, bf16, int8, q4: raise --tolerance to match)")
    ap.add_argument("--work", type=Path, default=None, help="where the random models are written (default: a temporary directory)")
    ap.add_argument("run_args", nargs="*", help="after --: extra arguments for deberta run")
    args = ap.parse_args(argv)
    quiet_transformers()
    work = args.work or Path(tempfile.mkdtemp(prefix="deberta-differential-"))
    counts = {"ok": 0, "flip": 0, "refused": 0, "failed": 0}
    try:
        for seed in range(args.start, args.start + args.count):
            result = check_seed(seed, args, work)
            if result in counts:
                counts[result] += 1
            else:
                counts["failed"] += 1
                print("FAIL", result, flush=True)
    finally:
        if args.work is None and not counts["failed"]:
            shutil.rmtree(work, ignore_errors=True)
    print(f"seeds {args.start} ..< {args.start + args.count}: {counts['ok']} match, "
          + (f"{counts['flip']} match the simulation under 1e-7 to 1e-6 input noise (a rounding flip), " if args.convert in ("int8", "q4") else "")
          + f"{counts['refused']} p2p refused, "
          f"{counts['failed']} failed")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
