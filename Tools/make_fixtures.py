#!/usr/bin/env python3
"""Regenerate the reference fixtures under Fixtures/ (models/ and formats/).

Usage (from the repository root):

    $(Tools/reference_env.sh) Tools/make_fixtures.py            # pinned reference venv (recommended)
    Tools/make_fixtures.py                                       # any python3 that has the pinned packages
    Tools/make_fixtures.py --only v3-mlm dtypes                  # regenerate a subset
    Tools/make_fixtures.py --list                                # list fixture names

`Tools/reference_env.sh` creates/updates a virtual environment outside the repository from
`Tools/requirements-reference.txt` and prints the path of its python.

Everything is deterministic (fixed seeds, fixed inputs): running the script twice yields the same
bytes with the pinned versions. See Fixtures/README.md for the contract of the files written here.

Structure: every fixture is a function `fn(root)` (root = the Fixtures/ directory) registered with
`@fixture(GROUP, "name")` in an ordered group: MODEL_FIXTURES (-> Fixtures/models/<name>/) and
FORMAT_FIXTURES (-> Fixtures/formats/). `main()` runs every group of GROUPS in order, or the names
given with --only. To add fixtures (tokenizer strings, quantized references, ...), add a group, e.g.
`TOKENIZER_FIXTURES = OrderedDict(); GROUPS["tokenizers"] = TOKENIZER_FIXTURES`, and decorate
functions with `@fixture(TOKENIZER_FIXTURES, "name")`. Helpers to reuse: large_init, make_rows,
save_reference, load_f64, save_bin_pretrained, save_safetensors_pretrained, train_spm, save_st,
save_expected, rewrite_torch_zip.

The `quant` group (after the others) writes reference.int8/q4.safetensors beside each model fixture's
reference (one fixture `quant-<model>` per model; run it after regenerating that model, whose directory
is recreated). Quantization helpers: QuantLinear, quantized_linears, quant_runner.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import pickletools
import shutil
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.24.0",
    "safetensors": "0.8.0",
    "sentencepiece": "0.2.3",
    "tokenizers": "0.23.3",
}

try:
    import numpy as np
    import sentencepiece as spm
    import safetensors
    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from torch import nn
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        f"make_fixtures.py: missing package ({exc}).\n"
        "Run it with the pinned reference environment:\n"
        "    $(Tools/reference_env.sh) Tools/make_fixtures.py\n"
    )
    sys.exit(2)

from transformers import (  # noqa: E402
    DebertaConfig,
    DebertaForMaskedLM,
    DebertaForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DebertaV2Model,
)
from transformers.models.deberta import modeling_deberta  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "Fixtures"

# Special ids shared by every fixture (DeBERTa-v3 layout).
PAD, CLS, SEP, UNK = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

MODEL_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
FORMAT_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
OPS_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
GROUPS = OrderedDict([("models", MODEL_FIXTURES), ("formats", FORMAT_FIXTURES), ("ops", OPS_FIXTURES)])


def fixture(group: "OrderedDict[str, callable]", name: str):
    def register(fn):
        if name in group:
            raise ValueError(f"duplicate fixture {name}")
        group[name] = fn
        return fn

    return register


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# Generic helpers
# ----------------------------------------------------------------------------------------------


def versions_metadata() -> dict:
    return {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}


def check_versions(allow_mismatch: bool) -> None:
    found = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "sentencepiece": spm.__version__,
    }
    try:
        import tokenizers

        found["tokenizers"] = tokenizers.__version__
    except ImportError:
        found["tokenizers"] = "missing"
    bad = {k: v for k, v in found.items() if v != PINNED[k]}
    if bad:
        msg = ", ".join(f"{k} {v} (pinned {PINNED[k]})" for k, v in bad.items())
        if allow_mismatch:
            log(f"WARNING: version mismatch: {msg}")
        else:
            sys.exit(
                f"version mismatch: {msg}\nUse $(Tools/reference_env.sh) Tools/make_fixtures.py "
                "or pass --allow-version-mismatch."
            )


def write_json(path: Path, obj) -> None:
    # Same formatting as transformers' PretrainedConfig.to_json_file.
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_st(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """safetensors.torch.save_file, then sort the __metadata__ keys in place: the Rust writer emits
    them in hash-map order, which would make the bytes differ from run to run."""
    save_file(tensors, str(path), metadata=metadata)
    raw = bytearray(Path(path).read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    if "__metadata__" in header:
        meta = OrderedDict(sorted(header.pop("__metadata__").items()))
        header = OrderedDict([("__metadata__", meta), *header.items()])
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n
        raw[8 : 8 + n] = text + b" " * (n - len(text))
        Path(path).write_bytes(bytes(raw))


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def assert_finite(name: str, t: torch.Tensor) -> None:
    if t.is_floating_point():
        if not torch.isfinite(t).all():
            raise AssertionError(f"{name}: non-finite values")
        flat = t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(1, -1)
        if flat.numel() and (flat.abs().amax(dim=-1) == 0).all():
            raise AssertionError(f"{name}: all rows are zero")


def large_init(model: nn.Module, seed: int) -> None:
    """Large random init so attention is far from uniform and position errors show.

    Weight matrices, embeddings: N(0, 0.3); biases: N(0, 0.1); LayerNorm weight: 1 + N(0, 0.05),
    LayerNorm bias: N(0, 0.05). Tied parameters are visited once (named_parameters dedups).
    """
    g = torch.Generator().manual_seed(seed)
    ln_params = set()
    for mod in model.modules():
        if isinstance(mod, (nn.LayerNorm, modeling_deberta.DebertaLayerNorm)):
            for p in mod.parameters(recurse=False):
                ln_params.add(id(p))
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if id(p) in ln_params:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.05 * noise)
                else:
                    p.copy_(0.05 * noise)
            elif name.endswith("bias"):  # also v1 q_bias / v_bias
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.3 * noise)


def make_rows(g: torch.Generator, T: int, lengths, pairs, vocab: int, low: int = 4):
    """Random ids in [low, vocab) framed as [CLS] A [SEP] (B [SEP]); pads (id 0, mask 0) at the end."""
    B = len(lengths)
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    types = torch.zeros(B, T, dtype=torch.long)
    for b, (L, pair) in enumerate(zip(lengths, pairs)):
        assert 4 <= L <= T
        body = torch.randint(low, vocab, (L,), generator=g)
        if pair:
            la = (L - 3) // 2
            lb = L - 3 - la
            row = [CLS] + body[:la].tolist() + [SEP] + body[la : la + lb].tolist() + [SEP]
            tt = [0] * (la + 2) + [1] * (lb + 1)
        else:
            row = [CLS] + body[: L - 2].tolist() + [SEP]
            tt = [0] * L
        ids[b, :L] = torch.tensor(row)
        mask[b, :L] = 1
        types[b, :L] = torch.tensor(tt)
    assert (mask == 0).any(), "at least one row must be padded"
    return ids, mask, types


def save_reference(path: Path, inputs: dict, outputs: dict, architecture: str, model_type: str) -> None:
    tensors = {}
    for k, v in inputs.items():
        tensors[k] = v.to(torch.int64).contiguous()
    for k, v in outputs.items():
        assert_finite(f"{path.parent.name}/{path.name}:{k}", v)
        tensors[k] = v.detach().to(torch.float32).contiguous()
    meta = {"architecture": architecture, "model_type": model_type, **versions_metadata()}
    save_st(tensors, path, metadata=meta)
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in tensors.items())
    log(f"    {path.relative_to(path.parent.parent.parent)}: {shapes}")


def finalize_config(directory: Path, drop_architectures: bool = False, pos_att_type_string: bool = False) -> None:
    """Edit config.json after saving: drop `architectures`, and/or write pos_att_type as the
    "a|b" string that hub configs carry (transformers 5.x saves it as a list)."""
    cfg_path = directory / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if drop_architectures:
        cfg.pop("architectures", None)
    if pos_att_type_string and isinstance(cfg.get("pos_att_type"), list):
        cfg["pos_att_type"] = "|".join(cfg["pos_att_type"])
    write_json(cfg_path, cfg)


def save_safetensors_pretrained(model, directory: Path, dtype=None, max_shard_size=None, extra=None) -> None:
    """save_pretrained (safetensors), optionally cast and/or sharded, optionally adding tensors."""
    if dtype is not None:
        model = model.to(dtype)
    kwargs = {}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(directory, **kwargs)
    if extra:
        assert max_shard_size is None
        path = directory / "model.safetensors"
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        for k, v in extra.items():
            assert k not in tensors
            tensors[k] = v.to(next(iter(tensors.values())).dtype).contiguous()
        save_st(tensors, path, metadata=meta)


def save_bin_pretrained(model, directory: Path, max_shard_size=None) -> None:
    """Write a PyTorch zip checkpoint the way transformers 4.x save_pretrained(safe_serialization=False)
    did (transformers 5.x only writes safetensors): config.json, then torch.save of the full
    state_dict (tied aliases kept, sharing storage), or shards `pytorch_model-0000i-of-0000N.bin`
    plus `pytorch_model.bin.index.json` {"metadata": {"total_size"}, "weight_map"}."""
    from huggingface_hub import split_torch_state_dict_into_shards

    directory.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    model.config.dtype = str(model.dtype).split(".")[1]
    model.config.save_pretrained(directory)
    sd = model.state_dict()
    if max_shard_size is None:
        torch.save(sd, directory / "pytorch_model.bin")
        return
    split = split_torch_state_dict_into_shards(
        sd, filename_pattern="pytorch_model{suffix}.bin", max_shard_size=max_shard_size
    )
    assert split.is_sharded and len(split.filename_to_tensors) >= 2
    for filename, names in split.filename_to_tensors.items():
        torch.save({n: sd[n] for n in names}, directory / filename)
    write_json(
        directory / "pytorch_model.bin.index.json",
        {"metadata": dict(split.metadata), "weight_map": dict(split.tensor_to_filename)},
    )


def load_f64(cls, directory: Path, allowed_unexpected=()):
    model, info = cls.from_pretrained(directory, dtype=torch.float64, output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"] or info["error_msgs"]:
        raise AssertionError(f"{directory.name}: loading problems {info}")
    unexpected = set(info["unexpected_keys"]) - set(allowed_unexpected)
    if unexpected:
        raise AssertionError(f"{directory.name}: unexpected keys {sorted(unexpected)}")
    if info["unexpected_keys"]:
        log(f"    from_pretrained ignored: {sorted(info['unexpected_keys'])}")
    return model.eval()


def assert_same_params(a: nn.Module, b: nn.Module, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), what
    for k in sa:
        if not torch.equal(sa[k].to(torch.float64), sb[k].to(torch.float64)):
            raise AssertionError(f"{what}: {k} differs after reload")


class float64_v1_layernorm:
    """transformers' DebertaLayerNorm (v1) upcasts with .float(): in a float64 model that silently
    rounds every LayerNorm through float32. Within this context it computes in the input dtype, so
    v1 references are true float64. (Checked against the unpatched module, see run_backbone_checks.)"""

    def __enter__(self):
        self.orig = modeling_deberta.DebertaLayerNorm.forward

        def forward(ln, hidden_states):
            mean = hidden_states.mean(-1, keepdim=True)
            variance = (hidden_states - mean).pow(2).mean(-1, keepdim=True)
            hidden_states = (hidden_states - mean) / torch.sqrt(variance + ln.variance_epsilon)
            return ln.weight * hidden_states + ln.bias

        modeling_deberta.DebertaLayerNorm.forward = forward
        return self

    def __exit__(self, *exc):
        modeling_deberta.DebertaLayerNorm.forward = self.orig
        return False


@torch.no_grad()
def run_backbone_checks(name: str, backbone, ids, mask, types, last_hidden_state) -> None:
    """Sanity checks: attention far from uniform; a wrong relative position index changes outputs."""
    kwargs = {"token_type_ids": types} if types is not None else {}
    emb = backbone.embeddings(input_ids=ids, mask=mask, **kwargs)
    enc = backbone.encoder
    out = enc(emb, mask, output_attentions=True, return_dict=True)
    valid = mask.bool()
    assert torch.allclose(out.last_hidden_state[valid], last_hidden_state[valid], atol=1e-12, rtol=0)
    # Mean over valid query rows of the largest attention probability.
    pmax = []
    for att in out.attentions:
        m = att.amax(-1)  # [B, heads, T]
        pmax.append(m.permute(0, 2, 1)[valid].mean().item())
    if enc.relative_attention:
        rp = enc.get_rel_pos(emb)
        shifted = enc(emb, mask, relative_pos=rp + 1, return_dict=True).last_hidden_state
        delta = (shifted - out.last_hidden_state)[valid].abs().max().item()
        assert delta > 0.05, f"{name}: relative position shift changes outputs by only {delta}"
    else:
        delta = float("nan")
    log(f"    mean max attention prob per layer {[round(x, 3) for x in pmax]}; rel_pos+1 changes output by {delta:.3g}")
    assert min(pmax) > 0.25, f"{name}: attention too uniform"


# ----------------------------------------------------------------------------------------------
# SentencePiece tokenizer (v3-mlm)
# ----------------------------------------------------------------------------------------------

SPM_CORPUS = """\
The quick brown fox jumps over the lazy dog near the river bank.
A small model can still learn how words are split into pieces.
Tokenizers turn text into numbers, and numbers into vectors.
The weather was cold in the morning, but the afternoon was warm and bright.
She walked to the station, bought a ticket, and waited for the train.
Where is the station? It is next to the old market, behind the library.
Researchers compared the new method with several strong baselines.
The results show that relative positions matter for attention.
Every sentence in this file was written for the test fixtures of the project.
Children played football in the park while their parents talked about the news.
He opened the window, and the sound of the city filled the room.
Reading books before sleep is a habit that many people enjoy.
The museum was closed on Monday, so they visited the garden instead.
Water boils at one hundred degrees at sea level, but at lower temperatures in the mountains.
Please remember to bring your passport, your ticket, and a warm jacket.
The committee will announce its decision after the meeting next week.
Our neighbours have a black cat, a white dog, and three noisy birds.
Learning a new language takes time, patience, and a lot of practice.
The bakery on the corner sells fresh bread, sweet cakes, and hot coffee.
Scientists measured the temperature of the ocean at different depths.
If you want to understand a model, look carefully at its inputs and outputs.
The teacher asked the students to write a short story about their holidays.
Heavy rain caused delays on the roads and in the airports across the region.
A good question is often more useful than a quick answer.
The painter mixed blue and yellow to make a bright green colour.
They travelled by boat from the northern island to the southern coast.
Numbers like 2024, 3.14, and 42 appear in many examples.
The café served croissants and a naïve little tea, said the critic.
Ｆｕｌｌ-width letters and ligatures like ﬁ are normalized by NFKC.
Masked language models predict the hidden words from the context around them.
Discriminators decide whether each token was replaced by a generator or not.
Question answering systems find the span of text that answers a question.
Natural language inference asks if one sentence entails, contradicts, or is neutral to another.
Multiple choice tasks give several candidate answers, and only one is correct.
The old bridge over the river was built more than two hundred years ago.
Farmers harvest wheat in the summer and plant new seeds in the autumn.
The orchestra played a quiet piece, and then a loud and fast one.
Doctors recommend drinking enough water and sleeping at least seven hours.
The library keeps rare maps, letters, and photographs from the last century.
Engineers tested the bridge, the tunnel, and the new railway line.
My brother fixed his bicycle and rode it to school the next morning.
Clouds gathered over the hills, and soon the first drops of rain fell.
The market opens early, and the best fruit is sold before noon.
Translation between languages is hard when words have many meanings.
Her favourite season is spring, when the trees turn green again.
The computer saved the file, closed the program, and shut down.
Birds flew south in long lines as the days became shorter.
A map, a compass, and a little courage are enough for a long walk.
The small village had one shop, one school, and one very old church.
He wrote the numbers down carefully, checking each one twice.
"""

SPM_PIECES = 300
MASK_ID = SPM_PIECES  # [MASK] is appended after the pieces, like 128000 in DeBERTa-v3
V3_VOCAB = 320  # padded above pieces + 1, like 128100 in DeBERTa-v3


def train_spm() -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS.splitlines()),
        model_writer=model,
        model_type="unigram",
        vocab_size=SPM_PIECES,
        normalization_rule_name="nmt_nfkc",
        character_coverage=1.0,
        pad_id=PAD,
        pad_piece="[PAD]",
        bos_id=CLS,
        bos_piece="[CLS]",
        eos_id=SEP,
        eos_piece="[SEP]",
        unk_id=UNK,
        unk_piece="[UNK]",
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    data = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=data)
    assert sp.get_piece_size() == SPM_PIECES
    assert [sp.id_to_piece(i) for i in range(4)] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert sp.is_control(PAD) and sp.is_control(CLS) and sp.is_control(SEP) and sp.is_unknown(UNK)
    return data


def write_v3_tokenizer_files(directory: Path, spm_bytes: bytes) -> None:
    (directory / "spm.model").write_bytes(spm_bytes)
    write_json(directory / "added_tokens.json", {"[MASK]": MASK_ID})
    specials = {
        "bos_token": "[CLS]",
        "cls_token": "[CLS]",
        "eos_token": "[SEP]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }
    write_json(directory / "special_tokens_map.json", specials)
    write_json(
        directory / "tokenizer_config.json",
        {
            **specials,
            "do_lower_case": False,
            "model_max_length": 1000000000000000019884624838656,
            "sp_model_kwargs": {},
            "split_by_punct": False,
            "tokenizer_class": "DebertaV2Tokenizer",
            "vocab_type": "spm",
        },
    )


def spm_row(sp, text: str, mask_word_index=None, pair: str | None = None):
    """[CLS] A [SEP] (B [SEP]) with real spm ids; optionally replace the piece at mask_word_index by [MASK]."""
    a = sp.encode(text)
    if mask_word_index is not None:
        a[mask_word_index] = MASK_ID
    row = [CLS] + a + [SEP]
    if pair is not None:
        row += sp.encode(pair) + [SEP]
    return row


def pad_rows(rows, T=None):
    T = T or max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return ids, mask


# ----------------------------------------------------------------------------------------------
# Model fixtures
# ----------------------------------------------------------------------------------------------

TINY = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-7, hidden_act="gelu")


def v3_config(**over) -> DebertaV2Config:
    kw = dict(
        vocab_size=V3_VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type="p2c|c2p",
        position_biased_input=False,
        type_vocab_size=0,
        legacy=False,
        **TINY,
    )
    kw.update(over)
    return DebertaV2Config(**kw)


def bucket_check(T: int, buckets: int, max_rel: int) -> int:
    """Number of (i, j) pairs whose relative position is changed by log bucketing."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    r = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return int((make_log_bucket_position(r, buckets, max_rel).long() != r).sum())


@torch.no_grad()
def emd_logits(model: DebertaV2ForMaskedLM, position_table: torch.Tensor, ids, mask, hidden_states):
    """Enhanced Mask Decoder (original DeBERTa repo, apps/models/masked_language_model.py).

    H = hidden_states[-2]; query = position_table[0:T] + H; the last encoder layer runs twice with
    shared weights (key/value = H, query_states = query), with the encoder's mask, relative
    positions and (normalized) relative embeddings; the MLM head reads the second output."""
    enc = model.deberta.encoder
    T = ids.shape[1]
    assert T <= position_table.shape[0]
    H = hidden_states[-2]
    att_mask = enc.get_attention_mask(mask)
    rel_pos = enc.get_rel_pos(hidden_states[0])
    rel_emb = enc.get_rel_embedding()
    layer = enc.layer[-1]
    # Calling the layer without query_states must reproduce the normal last hidden state.
    plain = layer(H, att_mask, relative_pos=rel_pos, rel_embeddings=rel_emb)[0]
    valid = mask.bool()
    assert torch.allclose(plain[valid], hidden_states[-1][valid], atol=1e-12, rtol=0), "EMD layer replay mismatch"
    query = position_table[:T].to(H.dtype).unsqueeze(0) + H
    for _ in range(2):
        query = layer(H, att_mask, query_states=query, relative_pos=rel_pos, rel_embeddings=rel_emb)[0]
    return model.lm_predictions(query, model.deberta.embeddings.word_embeddings)


@fixture(MODEL_FIXTURES, "v3-mlm")
def fixture_v3_mlm(root: Path) -> None:
    d = fresh_dir(root / "models" / "v3-mlm")
    spm_bytes = train_spm()
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    write_v3_tokenizer_files(d, spm_bytes)

    torch.manual_seed(0)
    cfg = v3_config()
    model = DebertaV2ForMaskedLM(cfg)
    large_init(model, seed=1001)
    g = torch.Generator().manual_seed(1002)
    pos_table = 0.3 * torch.randn(cfg.max_position_embeddings, cfg.hidden_size, generator=g)
    save_safetensors_pretrained(
        model, d, extra={"deberta.embeddings.position_embeddings.weight": pos_table}
    )
    ref = load_f64(DebertaV2ForMaskedLM, d, allowed_unexpected=["deberta.embeddings.position_embeddings.weight"])
    assert_same_params(model, ref, "v3-mlm")
    pos_table = load_file(str(d / "model.safetensors"))["deberta.embeddings.position_embeddings.weight"].double()

    rows = [
        spm_row(sp, "Where is the market?", pair="It is behind the library 🙂.", mask_word_index=7),
        spm_row(sp, "The children played in the park.", mask_word_index=11),
        spm_row(sp, "A good question is more useful than a quick answer.", mask_word_index=5),
    ]
    ids, mask = pad_rows(rows)
    T = ids.shape[1]
    assert 18 <= T <= 26, f"v3-mlm: T={T}; adjust the sentences"
    assert (ids == UNK).any() and (ids == MASK_ID).sum() == 3
    assert bucket_check(T, cfg.position_buckets, cfg.max_position_embeddings) > 0
    log(f"    v3-mlm tokens: {ids.tolist()}")

    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask, output_hidden_states=True)
        out = ref(ids, attention_mask=mask)
        assert torch.allclose(out.logits, ref.lm_predictions(base.last_hidden_state, ref.deberta.embeddings.word_embeddings))
        emd = emd_logits(ref, pos_table, ids, mask, base.hidden_states)
    run_backbone_checks("v3-mlm", ref.deberta, ids, mask, None, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits, "emd_logits": emd},
        "DebertaV2ForMaskedLM",
        cfg.model_type,
    )

    # Long input: T = 4 x max_position_embeddings, past the absolute table (relative-only model).
    T_long = 4 * cfg.max_position_embeddings
    long_ids = [CLS]
    for line in SPM_CORPUS.splitlines():
        long_ids += sp.encode(line)
        if len(long_ids) >= T_long - 1:
            break
    long_ids = torch.tensor([long_ids[: T_long - 1] + [SEP]])
    long_mask = torch.ones_like(long_ids)
    assert long_ids.shape == (1, T_long)
    with torch.no_grad():
        out = ref(long_ids, attention_mask=long_mask, output_hidden_states=True)
    save_reference(
        d / "reference.long.safetensors",
        {"input_ids": long_ids, "attention_mask": long_mask},
        {"last_hidden_state": out.hidden_states[-1], "logits": out.logits},
        "DebertaV2ForMaskedLM",
        cfg.model_type,
    )


@fixture(MODEL_FIXTURES, "v2-conv-seqcls")
def fixture_v2_conv_seqcls(root: Path) -> None:
    d = fresh_dir(root / "models" / "v2-conv-seqcls")
    torch.manual_seed(0)
    cfg = DebertaV2Config(
        vocab_size=400,
        hidden_size=48,
        embedding_size=24,
        num_hidden_layers=2,
        num_attention_heads=6,
        intermediate_size=96,
        max_position_embeddings=64,
        relative_attention=True,
        position_buckets=8,
        max_relative_positions=32,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type="p2c|c2p",
        position_biased_input=False,
        type_vocab_size=2,
        conv_kernel_size=3,
        conv_act="gelu",
        num_labels=3,
        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
        label2id={"entailment": 0, "neutral": 1, "contradiction": 2},
        **TINY,
    )
    model = DebertaV2ForSequenceClassification(cfg)
    large_init(model, seed=2001)
    save_safetensors_pretrained(model, d, dtype=torch.float16)
    ref = load_f64(DebertaV2ForSequenceClassification, d)
    assert_same_params(model.to(torch.float16), ref, "v2-conv-seqcls (f16-rounded)")

    g = torch.Generator().manual_seed(2002)
    ids, mask, types = make_rows(g, 16, [16, 11, 16], [True, False, True], cfg.vocab_size)
    assert bucket_check(16, cfg.position_buckets, cfg.max_relative_positions) > 0
    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask, token_type_ids=types)
        out = ref(ids, attention_mask=mask, token_type_ids=types)
    run_backbone_checks("v2-conv-seqcls", ref.deberta, ids, mask, types, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits},
        "DebertaV2ForSequenceClassification",
        cfg.model_type,
    )


@fixture(MODEL_FIXTURES, "v2-sep-c2p-tokcls")
def fixture_v2_sep_c2p_tokcls(root: Path) -> None:
    d = fresh_dir(root / "models" / "v2-sep-c2p-tokcls")
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    cfg = DebertaV2Config(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        relative_attention=True,
        position_buckets=-1,
        max_relative_positions=8,
        norm_rel_ebd="none",
        share_att_key=False,
        pos_att_type="c2p",
        position_biased_input=True,
        type_vocab_size=0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        **TINY,
    )
    model = DebertaV2ForTokenClassification(cfg)
    names = model.state_dict().keys()
    assert any("pos_key_proj" in n for n in names) and not any("pos_query_proj" in n for n in names)
    large_init(model, seed=3001)
    save_safetensors_pretrained(model, d, dtype=torch.bfloat16)
    ref = load_f64(DebertaV2ForTokenClassification, d)
    assert_same_params(model.to(torch.bfloat16), ref, "v2-sep-c2p-tokcls (bf16-rounded)")

    g = torch.Generator().manual_seed(3002)
    ids, mask, _ = make_rows(g, 14, [14, 9], [False, False], cfg.vocab_size)
    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask)
        out = ref(ids, attention_mask=mask)
    run_backbone_checks("v2-sep-c2p-tokcls", ref.deberta, ids, mask, None, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits},
        "DebertaV2ForTokenClassification",
        cfg.model_type,
    )


@fixture(MODEL_FIXTURES, "v2-qa-sharded")
def fixture_v2_qa_sharded(root: Path) -> None:
    d = fresh_dir(root / "models" / "v2-qa-sharded")
    torch.manual_seed(0)
    cfg = v3_config(
        vocab_size=500,
        num_hidden_layers=2,
        max_position_embeddings=64,
        position_buckets=16,
        max_relative_positions=48,
        num_labels=2,
    )
    model = DebertaV2ForQuestionAnswering(cfg)
    large_init(model, seed=4001)
    save_safetensors_pretrained(model, d, max_shard_size="60KB")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and not (d / "model.safetensors").exists(), shards
    ref = load_f64(DebertaV2ForQuestionAnswering, d)
    assert_same_params(model, ref, "v2-qa-sharded")

    g = torch.Generator().manual_seed(4002)
    ids, mask, _ = make_rows(g, 18, [18, 13], [True, True], cfg.vocab_size)
    assert bucket_check(18, cfg.position_buckets, cfg.max_relative_positions) > 0
    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask)
        out = ref(ids, attention_mask=mask)
    run_backbone_checks("v2-qa-sharded", ref.deberta, ids, mask, None, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask},
        {"last_hidden_state": base.last_hidden_state, "start_logits": out.start_logits, "end_logits": out.end_logits},
        "DebertaV2ForQuestionAnswering",
        cfg.model_type,
    )


@fixture(MODEL_FIXTURES, "v2-mc-bin-sharded")
def fixture_v2_mc_bin_sharded(root: Path) -> None:
    d = fresh_dir(root / "models" / "v2-mc-bin-sharded")
    torch.manual_seed(0)
    cfg = v3_config(
        vocab_size=256,
        num_hidden_layers=2,
        max_position_embeddings=64,
        position_buckets=-1,
        max_relative_positions=-1,
    )
    model = DebertaV2ForMultipleChoice(cfg)
    large_init(model, seed=5001)
    save_bin_pretrained(model, d, max_shard_size="60KB")
    ref = load_f64(DebertaV2ForMultipleChoice, d)
    assert_same_params(model, ref, "v2-mc-bin-sharded")

    B, C, T = 2, 3, 14
    g = torch.Generator().manual_seed(5002)
    lengths = [14, 12, 9, 10, 14, 7]
    ids, mask, _ = make_rows(g, T, lengths, [True] * (B * C), cfg.vocab_size)
    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask)
        out = ref(ids.view(B, C, T), attention_mask=mask.view(B, C, T))
    assert out.logits.shape == (B, C)
    run_backbone_checks("v2-mc-bin-sharded", ref.deberta, ids, mask, None, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids.view(B, C, T), "attention_mask": mask.view(B, C, T)},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits},
        "DebertaV2ForMultipleChoice",
        cfg.model_type,
    )


def v1_config(**over) -> DebertaConfig:
    kw = dict(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        relative_attention=True,
        max_relative_positions=12,
        pos_att_type="c2p|p2c",
        position_biased_input=True,
        type_vocab_size=2,
        **TINY,
    )
    kw.update(over)
    return DebertaConfig(**kw)


def v1_reference(name, ref, call_full, ids, mask, types):
    """Run a v1 model in true float64 (patched LayerNorm), and check the drift against transformers'
    float32-rounding DebertaLayerNorm is tiny."""
    kwargs = {"token_type_ids": types} if types is not None else {}
    with torch.no_grad():
        base_unpatched = ref.deberta(ids, attention_mask=mask, **kwargs).last_hidden_state
        with float64_v1_layernorm():
            base = ref.deberta(ids, attention_mask=mask, **kwargs)
            out = call_full()
            run_backbone_checks(name, ref.deberta, ids, mask, types, base.last_hidden_state)
    valid = mask.bool()
    drift = (base_unpatched - base.last_hidden_state)[valid].abs().max().item()
    log(f"    v1 LayerNorm float32 rounding in transformers: max drift {drift:.2e}")
    assert drift < 1e-4
    return base, out


@fixture(MODEL_FIXTURES, "v1-mlm")
def fixture_v1_mlm(root: Path) -> None:
    d = fresh_dir(root / "models" / "v1-mlm")
    torch.manual_seed(0)
    cfg = v1_config()
    model = DebertaForMaskedLM(cfg)
    assert model.cls.predictions.decoder.weight is model.deberta.embeddings.word_embeddings.weight
    large_init(model, seed=6001)
    save_bin_pretrained(model, d)
    ref = load_f64(DebertaForMaskedLM, d)
    assert_same_params(model, ref, "v1-mlm")

    g = torch.Generator().manual_seed(6002)
    ids, mask, types = make_rows(g, 18, [18, 12], [True, False], cfg.vocab_size)
    base, out = v1_reference(
        "v1-mlm", ref, lambda: ref(ids, attention_mask=mask, token_type_ids=types), ids, mask, types
    )
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits},
        "DebertaForMaskedLM",
        cfg.model_type,
    )


@fixture(MODEL_FIXTURES, "v1-seqcls-noarch")
def fixture_v1_seqcls_noarch(root: Path) -> None:
    d = fresh_dir(root / "models" / "v1-seqcls-noarch")
    torch.manual_seed(0)
    cfg = v1_config(
        hidden_size=24,
        num_attention_heads=3,
        intermediate_size=48,
        max_relative_positions=-1,
        position_biased_input=False,
        type_vocab_size=0,
        num_labels=2,
    )
    model = DebertaForSequenceClassification(cfg)
    large_init(model, seed=7001)
    save_safetensors_pretrained(model, d)
    finalize_config(d, drop_architectures=True, pos_att_type_string=True)
    ref = load_f64(DebertaForSequenceClassification, d)
    assert_same_params(model, ref, "v1-seqcls-noarch")

    g = torch.Generator().manual_seed(7002)
    ids, mask, _ = make_rows(g, 12, [12, 8, 12], [False, False, True], cfg.vocab_size)
    base, out = v1_reference("v1-seqcls-noarch", ref, lambda: ref(ids, attention_mask=mask), ids, mask, None)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits},
        "DebertaForSequenceClassification",
        cfg.model_type,
    )


class RTDHead(nn.Module):
    """DeBERTa-v3 pretraining discriminator head (original repo MaskPredictionHead)."""

    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.classifier = nn.Linear(hidden, 1)


@fixture(MODEL_FIXTURES, "v3-rtd")
def fixture_v3_rtd(root: Path) -> None:
    d = fresh_dir(root / "models" / "v3-rtd")
    torch.manual_seed(0)
    cfg = v3_config(vocab_size=300, num_hidden_layers=2, max_position_embeddings=64)
    backbone = DebertaV2Model(cfg)
    head = RTDHead(cfg.hidden_size, cfg.layer_norm_eps)
    large_init(backbone, seed=8001)
    large_init(head, seed=8002)
    g = torch.Generator().manual_seed(8003)
    pos_table = 0.3 * torch.randn(cfg.max_position_embeddings, cfg.hidden_size, generator=g)

    # Checkpoint as a pretraining dump: `deberta.` backbone + mask_predictions.* head, no architectures.
    tensors = {f"deberta.{k}": v for k, v in backbone.state_dict().items()}
    tensors["deberta.embeddings.position_embeddings.weight"] = pos_table
    tensors.update({f"mask_predictions.{k}": v for k, v in head.state_dict().items()})
    save_st({k: v.contiguous() for k, v in tensors.items()}, d / "model.safetensors", metadata={"format": "pt"})
    cfg.dtype = "float32"
    cfg.save_pretrained(d)
    finalize_config(d, drop_architectures=True, pos_att_type_string=True)

    ref = load_f64(
        DebertaV2Model,
        d,
        allowed_unexpected=[k for k in tensors if k.startswith("mask_predictions.")]
        + ["embeddings.position_embeddings.weight", "deberta.embeddings.position_embeddings.weight"],
    )
    assert_same_params(backbone, ref, "v3-rtd backbone")
    w = {k[len("mask_predictions.") :]: v.double() for k, v in load_file(str(d / "model.safetensors")).items() if k.startswith("mask_predictions.")}

    g = torch.Generator().manual_seed(8004)
    ids, mask, _ = make_rows(g, 20, [20, 15, 20], [False, False, True], cfg.vocab_size)
    with torch.no_grad():
        h = ref(ids, attention_mask=mask).last_hidden_state
        x = h + h[:, :1]
        x = nn.functional.layer_norm(x, (cfg.hidden_size,), w["LayerNorm.weight"], w["LayerNorm.bias"], cfg.layer_norm_eps)
        x = nn.functional.linear(x, w["dense.weight"], w["dense.bias"])
        x = transformers.activations.ACT2FN[cfg.hidden_act](x)
        logits = nn.functional.linear(x, w["classifier.weight"], w["classifier.bias"]).squeeze(-1)
    assert cfg.hidden_act == "gelu"
    run_backbone_checks("v3-rtd", ref, ids, mask, None, h)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask},
        {"last_hidden_state": h, "logits": logits},
        "DebertaV2Model+mask_predictions(RTD)",
        cfg.model_type,
    )


# ----------------------------------------------------------------------------------------------
# Format fixtures (PyTorch pickle / zip loader)
# ----------------------------------------------------------------------------------------------


def torch_save_bytes(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def save_expected(path: Path, sd: dict) -> None:
    """Sibling <name>.expected.safetensors: same names, values as torch holds them, contiguous, native dtype."""
    tensors = {k: v.detach().clone().contiguous() for k, v in sd.items()}
    save_st(tensors, path)


def zip_entries(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(info, z.read(info.filename)) for info in z.infolist()]


FB_PAD_ID = 0x4246  # "FB": the extra-field id torch (miniz) uses to pad record data to 64 bytes


def aligned_extra(header_offset: int, name: str, align: int = 64) -> bytes:
    """Extra field that puts a stored entry's data (after the 30-byte local header, name, extra) on
    an `align`-byte boundary."""
    start = header_offset + 30 + len(name.encode("utf-8"))
    pad = (-(start + 4)) % align
    return struct.pack("<HH", FB_PAD_ID, pad) + b"Z" * pad


def write_zip(path: Path, entries, compress: int = zipfile.ZIP_STORED, align: int = 64) -> None:
    """Write (name, bytes[, compress]) entries with Python's zipfile; stored entries get their data
    aligned to `align` bytes with an "FB" padding extra field, as torch does. Fixed timestamps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are intended in duplicate_entry.bin
        with open(path, "wb") as fh, zipfile.ZipFile(fh, "w") as z:
            for entry in entries:
                name, data = entry[0], entry[1]
                ctype = entry[2] if len(entry) > 2 else compress
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = ctype
                info.create_system = 0
                info.external_attr = 0
                if ctype == zipfile.ZIP_STORED and align:
                    info.extra = aligned_extra(fh.tell(), name, align)
                z.writestr(info, data, compresslevel=9 if ctype == zipfile.ZIP_DEFLATED else None)


def set_compress_level(info: zipfile.ZipInfo, level: int) -> None:
    # Python < 3.13 names the attribute _compresslevel, 3.13+ compress_level.
    setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", level)


def rewrite_torch_zip(path: Path, data: bytes, transform=None, compress: int = zipfile.ZIP_STORED, extra=()):
    """Re-pack a torch zip; transform(name, bytes) -> bytes | None (None drops the entry)."""
    out = []
    for info, payload in zip_entries(data):
        if transform is not None:
            payload = transform(info.filename, payload)
            if payload is None:
                continue
        out.append((info.filename, payload, info.compress_type if compress is None else compress))
    out.extend(extra)
    write_zip(path, out)


class _Stub:
    """Placeholder for any global named in a pickle: nothing is imported or called for real."""

    def __init__(self, module, name):
        self.qualname = f"{module}.{name}"

    def __call__(self, *args):
        return ("call", self.qualname, args)


class StubUnpickler(pickle.Unpickler):
    """Reads our own torch data.pkl symbolically (find_class never resolves anything)."""

    def __init__(self, data: bytes, legacy: bool = False):
        super().__init__(io.BytesIO(data))
        self.storages = {}
        self.globals = set()
        self.pid_len = 6 if legacy else 5  # legacy pids add a view-metadata field

    def find_class(self, module, name):
        self.globals.add(f"{module}.{name}")
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict  # a plain container (state dicts are OrderedDicts)
        return _Stub(module, name)

    def persistent_load(self, pid):
        assert isinstance(pid, tuple) and len(pid) == self.pid_len and pid[0] == "storage", pid
        self.storages.setdefault(pid[2], pid)
        return ("storage", pid)


def scan_torch_pickle(data_pkl: bytes):
    u = StubUnpickler(data_pkl)
    obj = u.load()
    return obj, u


def opcodes(data_pkl: bytes):
    return {op.name for op, _, _ in pickletools.genops(data_pkl)}


def data_pkl_of(data: bytes) -> bytes:
    for info, payload in zip_entries(data):
        if info.filename.endswith("/data.pkl"):
            return payload
    raise AssertionError("no data.pkl")


STORAGE_ELEMENT_SIZE = {
    "torch.DoubleStorage": 8,
    "torch.FloatStorage": 4,
    "torch.HalfStorage": 2,
    "torch.BFloat16Storage": 2,
    "torch.LongStorage": 8,
    "torch.IntStorage": 4,
    "torch.ShortStorage": 2,
    "torch.CharStorage": 1,
    "torch.ByteStorage": 1,
    "torch.BoolStorage": 1,
}
DTYPE_ELEMENT_SIZE = {"torch.uint16": 2, "torch.uint32": 4, "torch.uint64": 8, "torch.float8_e4m3fn": 1, "torch.float8_e5m2": 1}


def storage_element_sizes(obj) -> dict:
    """storage key -> element size, from the symbolic rebuild calls of a state dict."""
    sizes = {}

    def visit(x):
        if isinstance(x, tuple) and len(x) == 3 and x[0] == "call":
            _, fn, args = x
            if fn in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3"):
                storage = args[0]
                assert storage[0] == "storage"
                pid = storage[1]
                cls = pid[1].qualname
                if fn.endswith("v3"):
                    size = DTYPE_ELEMENT_SIZE[args[6].qualname]
                else:
                    size = STORAGE_ELEMENT_SIZE[cls]
                assert sizes.get(pid[2], size) == size
                sizes[pid[2]] = size
            for a in args:
                visit(a)
        elif isinstance(x, (tuple, list)):
            for a in x:
                visit(a)
        elif isinstance(x, dict):
            for a in x.values():
                visit(a)

    visit(obj)
    return sizes


def assert_load_equal(path: Path, expected: dict, unwrap=None, weights_only=True) -> None:
    got = torch.load(path, weights_only=weights_only)
    if unwrap is not None:
        got = got[unwrap]
    assert set(got.keys()) >= set(expected.keys()), (path, got.keys())
    for k, v in expected.items():
        g = got[k]
        assert g.dtype == v.dtype and g.shape == v.shape and torch.equal(g, v), (path.name, k)


def format_state_dict_small():
    g = torch.Generator().manual_seed(9001)
    return OrderedDict(
        [
            ("encoder.weight", torch.randn(3, 4, generator=g)),
            ("encoder.bias", torch.randn(4, generator=g).to(torch.float16)),
            ("position_ids", torch.arange(5, dtype=torch.int64)),
        ]
    )


@fixture(FORMAT_FIXTURES, "dtypes")
def fixture_dtypes(root: Path) -> None:
    d = root / "formats"
    sd = OrderedDict()
    sd["f64"] = torch.tensor([[1.0 / 3.0, -2.5, 1e300], [-0.0, 2.0**-1074, 7.0]], dtype=torch.float64)
    sd["f32"] = torch.tensor([[1.5, -2.25, 3.0e38], [1e-45, -0.0, 123.456]], dtype=torch.float32)
    sd["f16"] = torch.tensor([1.5, -2.25, 65504.0, 6e-8, -0.0, 0.1], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -3.5, 3.0e38, 1e-30, 0.1], dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([0, -1, 2**40 + 3, -(2**63), 2**63 - 1], dtype=torch.int64)
    sd["i32"] = torch.tensor([[0, -1], [2**31 - 1, -(2**31)]], dtype=torch.int32)
    sd["i16"] = torch.tensor([1, -2, 32767, -32768], dtype=torch.int16)
    sd["i8"] = torch.tensor([1, -2, 127, -128], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True, True, False])
    sd["u16"] = torch.tensor([0, 1, 40000, 65535], dtype=torch.uint16)
    sd["u32"] = torch.tensor([0, 1, 3000000000, 2**32 - 1], dtype=torch.uint32)
    sd["u64"] = torch.tensor([0, 1, 2**63 + 5, 2**64 - 1], dtype=torch.uint64)
    sd["f8_e4m3fn"] = torch.tensor([0.5, -1.25, 448.0, 0.015625], dtype=torch.float32).to(torch.float8_e4m3fn)
    sd["f8_e5m2"] = torch.tensor([0.5, -1.5, 57344.0, 2.0**-16], dtype=torch.float32).to(torch.float8_e5m2)
    sd["scalar_f32"] = torch.tensor(3.25, dtype=torch.float32)
    sd["scalar_i64"] = torch.tensor(-7, dtype=torch.int64)
    sd["empty_f32"] = torch.zeros(0, 3, dtype=torch.float32)
    path = d / "dtypes.bin"
    data = torch_save_bytes(sd)
    path.write_bytes(data)
    save_expected(d / "dtypes.expected.safetensors", sd)
    assert_load_equal(path, sd)
    obj, u = scan_torch_pickle(data_pkl_of(data))
    kinds = {k: (v[1], v[2][0][1][1].qualname) for k, v in obj.items()}  # ("call", fn, (("storage", pid), ...))
    assert kinds["u16"] == ("torch._utils._rebuild_tensor_v3", "torch.storage.UntypedStorage"), kinds["u16"]
    assert kinds["f32"] == ("torch._utils._rebuild_tensor_v2", "torch.FloatStorage"), kinds["f32"]
    for k, (fn, cls) in kinds.items():
        log(f"    dtypes.bin {k:12s} {fn.split('.')[-1]:20s} {cls}")


@fixture(FORMAT_FIXTURES, "noncontig")
def fixture_noncontig(root: Path) -> None:
    d = root / "formats"
    g = torch.Generator().manual_seed(9002)
    big = torch.arange(40, dtype=torch.float32).reshape(8, 5) * 0.5 - 3.0
    x = torch.randn(4, 6, generator=g)
    emb = torch.randn(5, 3, generator=g)
    sd = OrderedDict()
    sd["transposed"] = torch.randn(3, 5, generator=g).t()  # [5, 3], stride (1, 5)
    sd["offset_slice"] = big[2:5]  # storage of 40 elements, storage_offset 10
    sd["strided"] = x[:, ::2]  # [4, 3], stride (6, 2)
    sd["tied_a"] = emb  # tied_a / tied_b: the same tensor (one storage, written once)
    sd["tied_b"] = emb
    sd["tied_view"] = emb[1:3]  # a view into the same storage with an offset
    sd["strided_f16"] = torch.randn(6, 4, generator=g).to(torch.float16)[::2, 1:]  # [3, 3], stride (8, 1), offset 1
    sd["param"] = nn.Parameter(torch.randn(2, 3, generator=g))  # pickled via torch._utils._rebuild_parameter
    assert not sd["transposed"].is_contiguous() and sd["offset_slice"].storage_offset() == 10
    assert not sd["strided"].is_contiguous()
    path = d / "noncontig.bin"
    data = torch_save_bytes(sd)
    path.write_bytes(data)
    save_expected(d / "noncontig.expected.safetensors", {k: v.detach() for k, v in sd.items()})
    assert_load_equal(path, {k: v.detach() for k, v in sd.items()})
    obj, u = scan_torch_pickle(data_pkl_of(data))
    assert "torch._utils._rebuild_parameter" in u.globals, u.globals
    assert len(u.storages) == 6, u.storages.keys()  # emb storage shared by tied_a/tied_b/tied_view


@fixture(FORMAT_FIXTURES, "wrapped")
def fixture_wrapped(root: Path) -> None:
    d = root / "formats"
    sd = format_state_dict_small()
    for name, obj, key in [
        ("wrapped_state_dict", {"state_dict": sd, "epoch": 3}, "state_dict"),
        ("wrapped_model", {"model": sd}, "model"),
        ("wrapped_module", {"module": sd}, "module"),
    ]:
        path = d / f"{name}.bin"
        path.write_bytes(torch_save_bytes(obj))
        save_expected(d / f"{name}.expected.safetensors", sd)
        assert_load_equal(path, sd, unwrap=key)


@fixture(FORMAT_FIXTURES, "deflated")
def fixture_deflated(root: Path) -> None:
    d = root / "formats"
    sd = format_state_dict_small()
    sd["big"] = torch.arange(256, dtype=torch.float32).reshape(16, 16) / 7.0
    path = d / "deflated.bin"
    rewrite_torch_zip(path, torch_save_bytes(sd), compress=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    save_expected(d / "deflated.expected.safetensors", sd)
    try:
        assert_load_equal(path, sd)
        log("    deflated.bin: torch.load reads it")
    except Exception as exc:  # informational: torch's own reader may refuse deflated records
        log(f"    deflated.bin: torch.load refuses it ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")


@fixture(FORMAT_FIXTURES, "bigendian")
def fixture_bigendian(root: Path) -> None:
    d = root / "formats"
    g = torch.Generator().manual_seed(9003)
    sd = OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f64"] = torch.randn(5, generator=g).double()
    sd["f16"] = torch.randn(6, generator=g).half()
    sd["bf16"] = torch.randn(6, generator=g).bfloat16()
    sd["i64"] = torch.tensor([1, -2, 2**40 + 7], dtype=torch.int64)
    sd["i32"] = torch.tensor([1, -2, 2**30 + 7], dtype=torch.int32)
    sd["i16"] = torch.tensor([1, -2, 300], dtype=torch.int16)
    sd["u8"] = torch.tensor([1, 2, 250], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["u16"] = torch.tensor([1, 2, 60000], dtype=torch.uint16)  # _rebuild_tensor_v3 + UntypedStorage
    sd["strided_t"] = torch.randn(4, 3, generator=g).t()
    data = torch_save_bytes(sd)
    obj, _ = scan_torch_pickle(data_pkl_of(data))
    sizes = storage_element_sizes(obj)

    def swap(name: str, payload: bytes):
        if name.endswith("/byteorder"):
            assert payload == b"little"
            return b"big"
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "data":
            size = sizes[parts[2]]
            if size == 1:
                return payload
            arr = np.frombuffer(payload, dtype=np.dtype(f"<u{size}"))
            return arr.astype(np.dtype(f">u{size}")).tobytes()
        return payload

    path = d / "bigendian.bin"
    rewrite_torch_zip(path, data, transform=swap)
    save_expected(d / "bigendian.expected.safetensors", sd)
    # torch.load byte-swaps storages when byteorder differs, by the storage's dtype; records read
    # through _rebuild_tensor_v3 have an UntypedStorage (dtype uint8) and are NOT swapped by torch
    # 2.15. The expected file holds the true values (swap by the dtype's element size).
    assert_load_equal(path, {k: v for k, v in sd.items() if k != "u16"})
    got_u16 = torch.load(path, weights_only=True)["u16"]
    assert (got_u16.numpy().byteswap() == sd["u16"].numpy()).all()
    log(f"    bigendian.bin: torch.load returns u16 {got_u16.tolist()} unswapped (true values {sd['u16'].tolist()})")


def canonicalize_legacy(data: bytes) -> bytes:
    """The legacy format names storages by their memory address (str(storage._cdata)) and writes
    them in sorted-key order, so its bytes change from run to run. Rename the keys to fixed
    address-like strings in order of first use and write the key list and the storages in that
    order. (Protocol-2 pickles hold no byte offsets, so BINUNICODE strings can be replaced.)"""
    pos, ends = 0, []
    for _ in range(5):  # magic, protocol version, sys info, the object, the storage key list
        for op, _arg, at in pickletools.genops(data[pos:]):
            if op.name == "STOP":
                ends.append(pos + at + 1)
                break
        pos = ends[-1]
    scanner = StubUnpickler(data[ends[2] : ends[3]], legacy=True)
    scanner.load()
    order = list(scanner.storages)  # first use
    keys = pickle.loads(data[ends[3] : ends[4]])
    assert sorted(keys) == sorted(order)
    blobs, pos = {}, ends[4]
    for key in keys:
        pid = scanner.storages[key]
        (numel,) = struct.unpack("<q", data[pos : pos + 8])
        assert numel == pid[4]
        size = 8 + numel * STORAGE_ELEMENT_SIZE[pid[1].qualname]
        blobs[key] = data[pos : pos + size]
        pos += size
    assert pos == len(data)

    def enc(k):
        b = k.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    obj_pkl = data[ends[2] : ends[3]]
    rename = {old: str(94000000000000 + 64 * i) for i, old in enumerate(order)}
    for old, new in rename.items():
        assert obj_pkl.count(enc(old)) == 1, old  # later uses are memo BINGETs
        obj_pkl = obj_pkl.replace(enc(old), enc(new))
    new_keys = [rename[k] for k in order]
    assert new_keys == sorted(new_keys)
    return (
        data[: ends[2]]
        + obj_pkl
        + pickle.dumps(new_keys, protocol=2)
        + b"".join(blobs[k] for k in order)
    )


@fixture(FORMAT_FIXTURES, "legacy")
def fixture_legacy(root: Path) -> None:
    d = root / "formats"
    g = torch.Generator().manual_seed(9004)
    sd = OrderedDict(
        [
            ("weight", torch.randn(4, 3, generator=g)),
            ("half", torch.randn(5, generator=g).half()),
            ("ids", torch.tensor([3, -1, 2**35], dtype=torch.int64)),
            ("transposed", torch.randn(2, 3, generator=g).t()),
        ]
    )
    path = d / "legacy.bin"
    path.write_bytes(canonicalize_legacy(torch_save_bytes(sd, _use_new_zipfile_serialization=False)))
    head = path.read_bytes()[:16]
    assert head.startswith(bytes.fromhex("80028a0a6cfc9c46f9206aa85019")), head.hex()
    save_expected(d / "legacy.expected.safetensors", sd)
    assert_load_equal(path, sd)


@fixture(FORMAT_FIXTURES, "protocol4")
def fixture_protocol4(root: Path) -> None:
    d = root / "formats"
    sd = format_state_dict_small()
    path = d / "protocol4.bin"
    data = torch_save_bytes(sd, pickle_protocol=4)
    path.write_bytes(data)
    ops = opcodes(data_pkl_of(data))
    missing = {"FRAME", "MEMOIZE", "SHORT_BINUNICODE", "STACK_GLOBAL"} - ops
    assert not missing, missing
    save_expected(d / "protocol4.expected.safetensors", sd)
    # torch 2.15's weights_only unpickler rejects FRAME ("Unsupported operand 149"), so check the
    # file we just wrote ourselves with the full unpickler.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.load(path, weights_only=True)
            log("    protocol4.bin: torch.load(weights_only=True) reads it")
        except pickle.UnpicklingError as exc:
            reason = [l.strip() for l in str(exc).splitlines() if "Unsupported" in l] or ["refused"]
            log(f"    protocol4.bin: torch.load(weights_only=True) refuses it ({reason[0]})")
        assert_load_equal(path, sd, weights_only=False)


# --- malicious / refused files (never loaded here; no expected file) ---------------------------

EVIL_CMD = "echo pwned > /tmp/pwned"


def p_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def p_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def evil_pickle_reduce(module: str, name: str, arg: str) -> bytes:
    # {'weight': module.name(arg)}  -- PROTO 2, EMPTY_DICT, key, GLOBAL, arg, TUPLE1, REDUCE, SETITEM, STOP
    return b"\x80\x02}" + p_str("weight") + p_global(module, name) + p_str(arg) + b"\x85R" + b"s."


def evil_pickle_inst() -> bytes:
    # {'weight': INST os.system (cmd)}  -- MARK, arg, INST 'os\nsystem\n'
    return b"\x80\x02}" + p_str("weight") + b"(" + p_str(EVIL_CMD) + b"i" + b"os\nsystem\n" + b"s."


def evil_pickle_persid() -> bytes:
    # {'weight': _rebuild_tensor_v2(PERSID(('module', 'os.system', cmd, 'cpu', 4)), 0, (4,), (1,), False, OrderedDict())}
    # Only allow-listed globals appear: the persistent id's tag ('module', not 'storage') is the sole fault.
    pid = b"(" + p_str("module") + p_str("os.system") + p_str(EVIL_CMD) + p_str("cpu") + b"K\x04" + b"tQ"
    args = (
        b"("
        + pid
        + b"K\x00"
        + b"K\x04\x85"
        + b"K\x01\x85"
        + b"\x89"
        + p_global("collections", "OrderedDict")
        + b")R"
        + b"t"
    )
    return b"\x80\x02}" + p_str("weight") + p_global("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."


def base_torch_zip() -> bytes:
    return torch_save_bytes({"weight": torch.arange(4, dtype=torch.float32)})


def replace_data_pkl(new_pkl: bytes):
    def transform(name, payload):
        return new_pkl if name.endswith("/data.pkl") else payload

    return transform


@fixture(FORMAT_FIXTURES, "evil")
def fixture_evil(root: Path) -> None:
    d = root / "formats"
    pickles = {
        "evil_reduce_os_system.bin": evil_pickle_reduce("os", "system", EVIL_CMD),
        "evil_eval.bin": evil_pickle_reduce("builtins", "eval", f"__import__('os').system('{EVIL_CMD}')"),
        "evil_inst.bin": evil_pickle_inst(),
        "evil_persid.bin": evil_pickle_persid(),
    }
    for name, pkl in pickles.items():
        pickletools.dis(pkl, out=io.StringIO())  # well-formed (disassembly executes nothing)
        rewrite_torch_zip(d / name, base_torch_zip(), transform=replace_data_pkl(pkl))

    # TorchScript archive (constants.pkl, code/): must be refused.
    # (No nn.Linear: its Final constants are emitted in set order, which depends on PYTHONHASHSEED.)
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))

        def forward(self, x):
            return torch.matmul(x, self.weight.t())

    torch.manual_seed(0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still writes archives
        torch.jit.save(torch.jit.script(Tiny()), buf)
    # code/*.debug_pkl records the absolute path of this script: make it checkout-independent.
    here = p_str(str(Path(__file__).resolve()))

    def relative_source_path(name, payload):
        if name.endswith(".debug_pkl"):
            return payload.replace(here, p_str("Tools/make_fixtures.py"))
        if name.endswith("/.data/serialization_id"):  # torch derives it from the (path-dependent) records
            return b"1" + b"0" * (len(payload) - 1)
        return payload

    rewrite_torch_zip(d / "torchscript.pt", buf.getvalue(), transform=relative_source_path, compress=None)
    with zipfile.ZipFile(d / "torchscript.pt") as z:
        names = z.namelist()
        assert any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
        assert not any(here in z.read(n) for n in names)

    # Zip bomb: data/0 inflates to 200 MiB of zeros, the tensor needs 16 float32 = 64 bytes.
    bomb_size = 200 * 1024 * 1024
    data = torch_save_bytes({"weight": torch.zeros(16, dtype=torch.float32)})
    path = d / "zipbomb.bin"
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w") as z:
        for info, payload in zip_entries(data):
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.create_system = 0
            if info.filename.endswith("/data/0"):
                zi.compress_type = zipfile.ZIP_DEFLATED
                set_compress_level(zi, 9)
                chunk = bytes(1024 * 1024)
                with z.open(zi, "w") as w:
                    for _ in range(bomb_size // len(chunk)):
                        w.write(chunk)
            else:
                zi.compress_type = zipfile.ZIP_STORED
                zi.extra = aligned_extra(fh.tell(), info.filename)
                z.writestr(zi, payload)
    with zipfile.ZipFile(path) as z:
        bomb = [i for i in z.infolist() if i.filename.endswith("/data/0")][0]
        assert bomb.file_size == bomb_size and bomb.compress_size < 400_000

    # Path escape: an extra entry named ../evil.
    rewrite_torch_zip(d / "path_escape.bin", base_torch_zip(), extra=[("../evil", b"pwned\n", zipfile.ZIP_STORED)])

    # Duplicate entry: archive/data/0 twice with different bytes.
    base = base_torch_zip()
    dup_name = [i.filename for i, _ in zip_entries(base) if i.filename.endswith("/data/0")][0]
    rewrite_torch_zip(
        d / "duplicate_entry.bin",
        base,
        extra=[(dup_name, struct.pack("<4f", 9.0, 9.0, 9.0, 9.0), zipfile.ZIP_STORED)],
    )
    with zipfile.ZipFile(d / "duplicate_entry.bin") as z:
        assert [i.filename for i in z.infolist()].count(dup_name) == 2


# ----------------------------------------------------------------------------------------------


def summarize(root: Path) -> None:
    """Re-open every reference with safetensors, print metadata and shapes, and the total size."""
    for ref in sorted((root / "models").glob("*/reference*.safetensors")):
        with safe_open(str(ref), "pt") as f:
            meta = f.metadata()
            shapes = []
            for k in f.keys():
                t = f.get_tensor(k)
                assert_finite(f"{ref}:{k}", t)
                shapes.append(f"{k}{list(t.shape)}:{str(t.dtype).split('.')[-1]}")
        log(f"  {ref.relative_to(root)} [{meta['architecture']}, {meta['model_type']}]: {', '.join(shapes)}")
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    log(f"  {root.name}/ total: {total / 1e6:.2f} MB")


# ----------------------------------------------------------------------------------------------
# Single operations recorded from transformers' own functions
# ----------------------------------------------------------------------------------------------


@fixture(OPS_FIXTURES, "log_buckets")
def ops_log_buckets(root: Path) -> None:
    """make_log_bucket_position (modeling_deberta_v2) for a range of distances and configurations,
    with torch's default dtype (float32), as a user's run computes it."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    assert torch.get_default_dtype() == torch.float32
    cases = []
    for bucket_size, max_position in [(256, 512), (32, 32), (8, 32), (16, 48), (256, 1024), (64, 128), (512, 512)]:
        span = 3 * max_position
        rel = torch.arange(-span, span + 1, dtype=torch.long)
        buckets = make_log_bucket_position(rel, bucket_size, max_position).to(torch.long)
        cases.append({
            "bucket_size": bucket_size,
            "max_position": max_position,
            "relative_positions": rel.tolist(),
            "buckets": buckets.tolist(),
        })
    out = root / "ops" / "log_buckets.json"
    meta = versions_metadata()
    out.write_text(json.dumps({"function": "transformers.models.deberta_v2.modeling_deberta_v2.make_log_bucket_position",
                               **meta, "cases": cases}, separators=(",", ":")) + "\n")
    log(f"  {out.relative_to(root)}: {sum(len(c['buckets']) for c in cases)} values")


# ----------------------------------------------------------------------------------------------
# Tokenizer fixtures (-> Fixtures/tokenizers/)
# ----------------------------------------------------------------------------------------------

TOKENIZER_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
GROUPS["tokenizers"] = TOKENIZER_FIXTURES

# DeBERTa special tokens written in text, in the order the rule lists them.
TEXT_SPECIALS = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]
# Unicode White_Space (what Rust's char::is_whitespace, and so the tokenizers library, strips).
UNICODE_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

BYTE_FALLBACK_PIECES = 420
BYTE_FALLBACK_USER_SYMBOLS = ["<br>", "://"]
BYTE_FALLBACK_EXTRA_CORPUS = """\
Byte fallback turns characters that were never seen into their UTF-8 bytes.
Line breaks in HTML are written <br> and links start with https:// or http://.
The naïve café owner served crème brûlée to the über-cool visitors from Zürich.
Straße, Æsir, Œuvre and Ærø are spelled with letters beyond plain ASCII.
Prices went from 12.50 to 13.75 euros, an increase of 10 percent.
Email me at someone@example.com or visit the page at https://example.org/a/b?c=d.
"""
BPE_VOCAB = 400


def tokenizer_strings() -> list[str]:
    """The test strings of Fixtures/tokenizers/strings.json (fixed lists plus seeded combinations)."""
    import random
    import unicodedata

    plain = [line for line in SPM_CORPUS.splitlines()[:24]] + [
        "Hello world.",
        "Hello, world!",
        "The cat sat on the mat.",
        "I can't believe it's not butter.",
        "Don't stop believing; hold on to that feeling.",
        "What time is it? It's half past nine.",
        "She said: \"Let's go to the market tomorrow.\"",
        "Tokenization is the first step of every language model.",
        "The quick brown fox jumps over the lazy dog.",
        "unbelievable transformations",
        "x",
        "I",
        "a b c d e f g",
        "Paris is the capital of France.",
        "New York City's subway runs twenty-four hours a day.",
        "THE QUICK BROWN FOX SHOUTED IN CAPITALS.",
        "mIxEd CaSe TeXt iS hArD tO rEaD.",
    ]
    fullwidth = [
        "ＡＢＣ１２３",
        "Ｈｅｌｌｏ，　ｗｏｒｌｄ！",
        "ｆｕｌｌ－ｗｉｄｔｈ　ｔｅｘｔ（ｗｉｔｈ　ｐａｒｅｎｓ）",
        "ｶﾀｶﾅ ﾊﾝｶｸ",
        "ﾊﾟﾋﾟﾌﾟ",
        "Ｆｕｌｌ-width letters and ligatures like ﬁ are normalized by NFKC.",
        "１２３４５６７８９０",
        "＠＃＄％＾＆＊",
    ]
    ligatures = [
        "ﬁ ﬂ",
        "ﬁnance and ﬂower",
        "ﬀ ﬃ ﬄ ﬅ ﬆ",
        "oﬃce eﬀort baﬄe",
        "Œuvre, æther, Ĳssel",
        "ﬁ\u0301",
        "\ufb01",
    ]
    combining = [
        "e\u0301",
        "cafe\u0301",
        "caf\u00e9",
        "re\u0301sume\u0301 and résumé",
        "Tiếng Việt có dấu",
        unicodedata.normalize("NFD", "Tiếng Việt có dấu"),
        "Nguyễn Thị Minh Khai",
        "n\u0303o",
        "a\u0301\u0302\u0303\u0304",
        "\u0301abc",
        "\u0301",
        "x\u20dd",
        "Z\u0351\u0352\u0353a\u0354\u0355l\u0356\u0357g\u0358\u0359o",
        "Å Å Å",
        "\u1e9b\u0323",
        "Ω Ω",
    ]
    compat = [
        "①②③",
        "⑩ ⑳",
        "㎏ ㎞ ㎡",
        "™ ℠ ℃ ℉",
        "½ ¼ ¾ ⅓",
        "Ⅻ ⅷ",
        "㍿ ㌀",
        "\ufdfa",
        "…",
        "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕",
        "x² + y³ = z⁴",
        "H₂O",
        "ǅ ǈ ǋ",
        "㈱ ㊤",
        "ﹰ ﺀ",
        "µ vs μ",
        "Kelvin K and Ångström Å",
        "ſ and ẛ",
        "⁰¹²³⁴⁵⁶⁷⁸⁹",
    ]
    whitespace = [
        "",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "   \t\n  ",
        "hello  world",
        "hello     world",
        "hello\tworld",
        "hello\t\tworld",
        "hello\nworld",
        "hello\n\nworld",
        "hello\r\nworld",
        "line one\nline two\nline three",
        "  leading spaces",
        "trailing spaces  ",
        "  both sides  ",
        "\tleading tab",
        "trailing tab\t",
        "\nleading newline",
        "trailing newline\n",
        " \t mixed \n whitespace \r ",
        "a \t b \n c",
        "a\u3000b",
        "\u3000ideographic space\u3000",
        "a\u2003b\u2002c\u2009d",
        "no\u00a0break\u00a0space",
        "\u00a0leading nbsp",
        "narrow\u202fno-break",
        "10\u202f000",
        "zero\u200bwidth\u200bspace",
        "\u200b",
        "\u200bstart",
        "join\u200der and non\u200cjoiner",
        "\ufeffbyte order mark",
        "line\u2028separator\u2029paragraph",
        "x\u000by\u000cz",
        "a\u0085b",
        "\u1680ogham space",
        "      ",
        " a ",
        "a",
    ]
    scripts = [
        "東京は日本の首都です。",
        "中文测试，简体字。",
        "繁體中文測試",
        "漢字かなカナ交じり文",
        "こんにちは世界",
        "안녕하세요 세계",
        "한국어 텍스트입니다.",
        "\u1100\u1161\u11a8",
        "\u1112\u1161\u11ab\u1100\u1173\u11af",
        "ㄱㅏ ㅎㅏㄴ",
        "مرحبا بالعالم",
        "اَلْعَرَبِيَّةُ",
        "العربية 123 English",
        "שלום עולם",
        "שָׁלוֹם",
        "नमस्ते दुनिया",
        "हिन्दी भाषा",
        "สวัสดีชาวโลก",
        "Γειά σου Κόσμε",
        "Привет, мир!",
        "Ελληνικά και русский и English",
        "ქართული ენა",
        "Հայերեն",
        "አማርኛ",
        "தமிழ்",
        "ᚠᚢᚦᚨᚱᚲ",
        "𐌰𐌱𐌲",
        "𝄞 music",
    ]
    emoji = [
        "🙂",
        "I love it 😍😍😍",
        "👍🏽 thumbs up",
        "👍🏻👍🏼👍🏽👍🏾👍🏿",
        "👩‍💻 coder",
        "👨‍👩‍👧‍👦 family",
        "🇫🇷🇯🇵🇺🇸",
        "flag 🇩🇪 and 🏳️‍🌈",
        "1️⃣ 2️⃣ #️⃣",
        "❤️ ❤ ♥",
        "🧑🏾‍🚀 astronaut",
        "emoji🙂inside🙂words",
        "☃ ☂ ☀",
        "🙂" * 12,
    ]
    long_words = [
        "a" * 250,
        "ab" * 120,
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 5,
        "supercalifragilisticexpialidocious" * 7,
        "x" * 201 + " y",
        "ü" * 210,
        "漢" * 205,
        "0123456789" * 21,
    ]
    numbers = [
        "3.14159",
        "1,000,000",
        "2024-05-17",
        "-42",
        "+1 (555) 123-4567",
        "1e10 and 6.022e23",
        "0x1F 0b1010 0o17",
        "12:30:45",
        "99.9%",
        "$1,234.56 and €99,99",
        "¥500 £20 ₹100",
        "1/2 3/4",
        "IPv4 192.168.0.1",
        "version 1.2.3-beta+build.5",
    ]
    web = [
        "https://example.com/path?q=1&r=2#frag",
        "http://www.example.org/index.html",
        "Visit https://en.wikipedia.org/wiki/Tokenization_(lexical_analysis) now",
        "ftp://files.example.net/pub/file.tar.gz",
        "john.doe+test@example.org",
        "Contact: support@company.co.uk, sales@company.com",
        "www.example.com",
        "@username #hashtag",
        "C:\\Users\\name\\Documents\\file.txt",
        "/usr/local/bin/python3",
        "line<br>break<br>here",
        "<br><br>",
        "a://b",
    ]
    code = [
        "def f(x): return x**2",
        "if (a && b) { return c; }",
        "int main() {\n\treturn 0;\n}",
        "for i in range(10):\n    print(i)",
        "<div class=\"main\">Hello</div>",
        "SELECT * FROM users WHERE id = 42;",
        "x = [1, 2, 3]; y = {'a': 1}",
        "console.log(`template ${value}`);",
        "a->b->c; x::y::z",
        "#include <stdio.h>",
        "λx.x + 1",
        "snake_case camelCase PascalCase kebab-case",
        "__init__ __main__",
        "{\"key\": \"value\", \"n\": [1, 2]}",
    ]
    punctuation = [
        "!!!???...",
        "---",
        "...",
        "?!",
        "«quotes» „German“ “smart” ‘single’",
        "()[]{}<>",
        "a.b.c.d",
        "end.",
        ".start",
        "hello,world",
        "wait... what?!",
        "~`!@#$%^&*()_+-=",
        "'''\"\"\"",
        "—em dash– en dash‐hyphen",
        "¿Qué? ¡Sí!",
        "•bullet ·middle dot",
        "§ ¶ † ‡",
    ]
    mixed = [
        "Hello 世界 مرحبا שלום 🙂",
        "English and 日本語 mixed",
        "Русский text with English words",
        "café ＣＡＦＥ ｃａｆｅ",
        "naïve coöperation façade",
        "Straße STRASSE straße",
        "İstanbul ıi",
        "ﬁ①㎏™½ all together",
        "ÀÁÂÃÄÅ àáâãäå",
        "Ǆ ǅ ǆ",
    ]
    control = [
        "\x00",
        "a\x00b",
        "a\x01b",
        "bell\x07",
        "del\x7f",
        "\x1b[31mred\x1b[0m",
        "tab\tand\x0bvertical",
        "\x1f\x1e\x1d",
        "\x80\x9f",
        "soft\u00adhyphen",
        "\u200e\u200fmarks",
        "\u2066isolate\u2069",
        "\ufffd replacement",
        "\uffff noncharacter",
        "\U000e0041 tag",
        "\ue000 private use",
    ]
    specials = [
        "Paris is the [MASK] of France.",
        "a[MASK]b",
        "[MASK][MASK]",
        "[MASK]",
        " [MASK] ",
        "  [MASK]  ",
        "\t[MASK]\n",
        "\n[MASK]",
        "\u00a0[MASK]",
        "\u3000[MASK]",
        "[MASK].",
        "The [MASK] [MASK] is here.",
        "[CLS] hello [SEP]",
        "[CLS]hello[SEP]world[SEP]",
        "[CLS] A [SEP] B [SEP]",
        "a [SEP] b [CLS] c",
        "[PAD][PAD][PAD]",
        "text [PAD]",
        "[UNK]",
        "text [UNK] text",
        "[UNK][UNK]",
        "[mask] lowercase is not special",
        "[MASK",
        "MASK]",
        "[[MASK]]",
        "[ MASK ]",
        "[MASK][CLS][SEP][PAD][UNK]",
        "x[CLS]y",
        "🙂[MASK]🙂",
        "Ｐａｒｉｓ [MASK] ﬁne",
        "[MASKED]",
        "[MASK]ing",
        "  leading then [SEP]",
        "[SEP]  trailing  ",
    ]
    fixed = (plain + fullwidth + ligatures + combining + compat + whitespace + scripts + emoji + long_words
             + numbers + web + code + punctuation + mixed + control + specials)

    # Seeded combinations: corpus words mixed with the pieces above.
    rng = random.Random(20240517)
    words = sorted({w for line in SPM_CORPUS.split() for w in [line.strip(".,?\"")] if w})
    extras = ["ﬁ", "①", "ＡＢ", "🙂", "👍🏽", "é", "e\u0301", "東京", "안녕", "مرحبا", "\t", "\n", "  ", "\u00a0",
              "\u200b", "[MASK]", "[SEP]", "...", "42", "Ω", "ß", "İ", "<br>", "😀", "\u3000", "₂", "™", "x\u0308"]
    seeded = []
    for _ in range(80):
        parts = []
        for _ in range(rng.randint(2, 9)):
            parts.append(rng.choice(words) if rng.random() < 0.7 else rng.choice(extras))
            parts.append(rng.choice([" ", " ", " ", "", "  ", "\t", "\n"]))
        seeded.append("".join(parts))
    # Random code points (printable and not): characters unseen in training, byte fallback, unk runs.
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
             (0x3040, 0x30FF), (0x4E00, 0x4E80), (0xAC00, 0xAC80), (0x1F300, 0x1F64F), (0x2000, 0x206F),
             (0xFF00, 0xFFEF), (0x300, 0x36F), (0x2460, 0x24FF), (0x3300, 0x33FF)]
    for _ in range(40):
        lo, hi = rng.choice(pools)
        n = rng.randint(1, 12)
        seeded.append("".join(chr(rng.randint(lo, hi)) if rng.random() < 0.8 else " " for _ in range(n)))

    out = []
    seen = set()
    for s in fixed + seeded:
        if s not in seen:
            seen.add(s)
            out.append(s)
    assert len(out) >= 300, len(out)
    assert all(not (0xD800 <= ord(c) <= 0xDFFF) for s in out for c in s)
    return out


def write_json_lines(path: Path, header: dict, rows: list) -> None:
    """{"...header...", "rows": [...]} with one row per line (diffable, compact)."""
    lines = ["{"]
    for k, v in header.items():
        lines.append(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('"rows": [')
    lines += [json.dumps(r, ensure_ascii=False, separators=(",", ":")) + ("," if i + 1 < len(rows) else "")
              for i, r in enumerate(rows)]
    lines.append("]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def utf8_to_codepoint_offsets(text: str):
    """Map from UTF-8 byte offset to code point offset (byte offsets inside a character map to that character)."""
    table = []
    for i, c in enumerate(text):
        table += [i] * len(c.encode("utf-8"))
    table.append(len(text))
    return table


def spm_expected_rows(sp, strings):
    rows = []
    for text in strings:
        ids = sp.encode(text)
        pieces = sp.encode(text, out_type=str)
        proto = sp.encode(text, out_type="proto")
        assert [p.id for p in proto.pieces] == ids
        b2c = utf8_to_codepoint_offsets(text)
        boundaries = {len(text[:i].encode("utf-8")) for i in range(len(text) + 1)}
        offsets = []
        for p in proto.pieces:
            # Byte-fallback pieces of one character all carry the character's byte span, so the
            # conversion never lands inside a character; check it.
            assert p.begin in boundaries and p.end in boundaries, (text, p)
            offsets.append([b2c[p.begin], b2c[p.end]])
        # the library's own code point offsets agree
        om = sp.encode(text, out_type="offset_mapping")
        assert [list(o) for o in om["offsets"]] == offsets, (text, om["offsets"], offsets)
        rows.append({"text": text, "ids": ids, "pieces": pieces, "offsets": offsets})
    return rows


def tokenizers_expected_rows(tok, strings):
    rows = []
    for text in strings:
        e = tok.encode(text, add_special_tokens=False)
        rows.append({"text": text, "ids": e.ids, "tokens": e.tokens, "offsets": [list(o) for o in e.offsets]})
    return rows


def spm_model_header(sp, data: bytes) -> dict:
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    m = model_pb2.ModelProto()
    m.ParseFromString(data)
    ns = m.normalizer_spec
    return {
        "library": f"sentencepiece {spm.__version__}",
        "call": "SentencePieceProcessor.encode(text) ids, encode(text, out_type=str) pieces, "
                "encode(text, out_type='proto') piece begin/end (UTF-8 bytes) -> code points",
        "normalization_rule_name": ns.name,
        "add_dummy_prefix": ns.add_dummy_prefix,
        "remove_extra_whitespaces": ns.remove_extra_whitespaces,
        "byte_fallback": m.trainer_spec.byte_fallback,
        "piece_size": sp.get_piece_size(),
    }


def train_byte_fallback_spm() -> bytes:
    model = io.BytesIO()
    lines = SPM_CORPUS.splitlines() + BYTE_FALLBACK_EXTRA_CORPUS.splitlines()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=BYTE_FALLBACK_PIECES,
        normalization_rule_name="nmt_nfkc_cf",
        character_coverage=1.0,
        byte_fallback=True,
        user_defined_symbols=BYTE_FALLBACK_USER_SYMBOLS,
        pad_id=PAD,
        pad_piece="[PAD]",
        bos_id=CLS,
        bos_piece="[CLS]",
        eos_id=SEP,
        eos_piece="[SEP]",
        unk_id=UNK,
        unk_piece="[UNK]",
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    data = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=data)
    assert sp.get_piece_size() == BYTE_FALLBACK_PIECES
    assert [sp.id_to_piece(i) for i in range(4)] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert sp.piece_to_id("<0x41>") > 3 and sp.is_byte(sp.piece_to_id("<0x41>"))
    return data


def v3_spm_bytes(root: Path) -> bytes:
    """The v3-mlm fixture's spm.model (retrained deterministically; equal to the file when it exists)."""
    data = train_spm()
    existing = root / "models" / "v3-mlm" / "spm.model"
    if existing.exists():
        assert existing.read_bytes() == data, "train_spm() no longer reproduces models/v3-mlm/spm.model"
    return data


@fixture(TOKENIZER_FIXTURES, "strings")
def tok_strings(root: Path) -> None:
    strings = tokenizer_strings()
    out = root / "tokenizers" / "strings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("[\n" + ",\n".join(json.dumps(s, ensure_ascii=False) for s in strings) + "\n]\n", encoding="utf-8")
    log(f"  {out.relative_to(root)}: {len(strings)} strings")


def write_spm_fixture(root: Path, name: str, data: bytes) -> None:
    d = fresh_dir(root / "tokenizers" / name)
    (d / "spm.model").write_bytes(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    rows = spm_expected_rows(sp, tokenizer_strings())
    write_json_lines(d / "expected.json", spm_model_header(sp, data), rows)
    log(f"  tokenizers/{name}: {len(rows)} rows, {sum(len(r['ids']) for r in rows)} pieces")


@fixture(TOKENIZER_FIXTURES, "spm")
def tok_spm(root: Path) -> None:
    write_spm_fixture(root, "spm", v3_spm_bytes(root))


@fixture(TOKENIZER_FIXTURES, "spm-bytefallback")
def tok_spm_bytefallback(root: Path) -> None:
    data = train_byte_fallback_spm()
    write_spm_fixture(root, "spm-bytefallback", data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    bytes_used = sum(sp.is_byte(i) for t in tokenizer_strings() for i in sp.encode(t))
    unk_used = sum(i == UNK for t in tokenizer_strings() for i in sp.encode(t))
    assert bytes_used > 100, bytes_used
    log(f"  byte pieces used: {bytes_used}, unk: {unk_used}")


def deberta_v3_fast_tokenizer(spm_path: Path):
    """The tokenizer.json a DeBERTa-v3 hub checkpoint ships: transformers' DebertaV2Converter on the spm
    model (Strip + Precompiled + Replace normalizer, Metaspace pre-tokenizer, Unigram), plus the added tokens."""
    import types

    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import DebertaV2Converter

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab["[MASK]"] = MASK_ID
    # The slow DebertaV2Tokenizer is gone from transformers 5.x; the converter only reads these attributes.
    original = types.SimpleNamespace(
        vocab_file=str(spm_path), split_by_punct=False, do_lower_case=False, add_prefix_space=True,
        convert_tokens_to_ids=lambda t: vocab[t],
    )
    tok = DebertaV2Converter(original).converted()
    tok.add_special_tokens([
        AddedToken("[PAD]", special=True, normalized=False),
        AddedToken("[CLS]", special=True, normalized=False),
        AddedToken("[SEP]", special=True, normalized=False),
        AddedToken("[UNK]", special=True, normalized=False),
        AddedToken("[MASK]", lstrip=True, special=True, normalized=False),
    ])
    assert tok.token_to_id("[MASK]") == MASK_ID and tok.token_to_id("[UNK]") == UNK
    return tok


@fixture(TOKENIZER_FIXTURES, "unigram-json")
def tok_unigram_json(root: Path) -> None:
    import tempfile

    from tokenizers import Tokenizer

    d = fresh_dir(root / "tokenizers" / "unigram-json")
    with tempfile.TemporaryDirectory() as tmp:
        spm_path = Path(tmp) / "spm.model"
        spm_path.write_bytes(v3_spm_bytes(root))
        tok = deberta_v3_fast_tokenizer(spm_path)
    tok.save(str(d / "tokenizer.json"))
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    rows = tokenizers_expected_rows(tok, tokenizer_strings())
    import tokenizers

    header = {
        "library": f"tokenizers {tokenizers.__version__}",
        "call": "Tokenizer.from_file('tokenizer.json').encode(text, add_special_tokens=False): ids, tokens, "
                "offsets (code points)",
        "source": "transformers DebertaV2Converter on spm/spm.model + added tokens [PAD] [CLS] [SEP] [UNK] "
                  "[MASK] (lstrip)",
    }
    write_json_lines(d / "expected.json", header, rows)
    log(f"  tokenizers/unigram-json: {len(rows)} rows")


BPE_CORPUS_EXTRA = """\
def tokenize(text): return [byte for byte in text.encode("utf-8")]
GPT-2 uses a byte-level BPE, so every string can be encoded without unknown tokens.
DeBERTa v1 reuses the GPT-2 vocabulary and merges.
"""


@fixture(TOKENIZER_FIXTURES, "bpe")
def tok_bpe(root: Path) -> None:
    import tokenizers
    from tokenizers import Tokenizer
    from tokenizers.implementations import ByteLevelBPETokenizer

    d = fresh_dir(root / "tokenizers" / "bpe")
    lines = SPM_CORPUS.splitlines() + BPE_CORPUS_EXTRA.splitlines()
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bpe.train_from_iterator(lines, vocab_size=BPE_VOCAB, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    bpe.save_model(str(d))
    bpe.save(str(d / "tokenizer.json"))
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert tok.get_vocab_size() == BPE_VOCAB
    # vocab.json + merges.txt give the same tokens
    again = ByteLevelBPETokenizer.from_file(str(d / "vocab.json"), str(d / "merges.txt"),
                                            add_prefix_space=False, trim_offsets=True)
    strings = tokenizer_strings()
    rows = tokenizers_expected_rows(tok, strings)
    for r in rows:
        assert again.encode(r["text"]).ids == r["ids"]
    header = {
        "library": f"tokenizers {tokenizers.__version__}",
        "call": "Tokenizer.from_file('tokenizer.json').encode(text, add_special_tokens=False): ids, tokens, "
                "offsets (code points; ByteLevel post-processor with trim_offsets=true)",
        "source": f"ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True) trained to vocab {BPE_VOCAB}",
    }
    write_json_lines(d / "expected.json", header, rows)
    log(f"  tokenizers/bpe: {len(rows)} rows")


def split_on_specials(text: str):
    """The project's special-token rule: exact matches of TEXT_SPECIALS, left to right, earliest first
    (no two specials overlap); [MASK] also absorbs the white space on its left. Yields ("text", start, chunk)
    and ("special", start, token)."""
    import re

    ws = "[" + re.escape(UNICODE_WHITESPACE) + "]*"
    pattern = re.compile(ws + re.escape("[MASK]") + "|" + "|".join(re.escape(s) for s in TEXT_SPECIALS if s != "[MASK]"))
    pos = 0
    for m in pattern.finditer(text):
        token = m.group(0).lstrip(UNICODE_WHITESPACE)
        start = m.end() - len(token)
        if m.start() > pos:
            yield ("text", pos, text[pos : m.start()])
        yield ("special", start, token)
        pos = m.end()
    if pos < len(text):
        yield ("text", pos, text[pos:])


def special_rule_encode(sp, text: str):
    ids, pieces, offsets = [], [], []
    for kind, start, part in split_on_specials(text):
        if kind == "special":
            ids.append(MASK_ID if part == "[MASK]" else sp.piece_to_id(part))
            pieces.append(part)
            offsets.append([start, start + len(part)])
        else:
            row = spm_expected_rows(sp, [part])[0]
            ids += row["ids"]
            pieces += row["pieces"]
            offsets += [[a + start, b + start] for a, b in row["offsets"]]
    return {"text": text, "ids": ids, "pieces": pieces, "offsets": offsets}


@fixture(TOKENIZER_FIXTURES, "special")
def tok_special(root: Path) -> None:
    from tokenizers import Tokenizer

    data = v3_spm_bytes(root)
    sp = spm.SentencePieceProcessor(model_proto=data)
    strings = tokenizer_strings()
    with_special = [s for s in strings if any(t in s for t in TEXT_SPECIALS)]
    rows = [special_rule_encode(sp, s) for s in strings]
    d = root / "tokenizers" / "spm"
    header = {
        "rule": "split on exact [CLS] [SEP] [PAD] [UNK] [MASK] (left to right); [MASK] absorbs the Unicode "
                "white space on its left; each remaining chunk is encoded by SentencePieceProcessor.encode as its "
                "own text; specials map to their piece ids, [MASK] to added_tokens.json (300); a special's "
                "offsets cover the token text only",
        "library": f"sentencepiece {spm.__version__}",
        "strings_with_specials": len(with_special),
    }
    write_json_lines(d / "special.expected.json", header, rows)

    # Compare with the tokenizers library on the unigram tokenizer.json (written by "unigram-json").
    tj = root / "tokenizers" / "unigram-json" / "tokenizer.json"
    if tj.exists():
        tok = Tokenizer.from_file(str(tj))
        diff_ids, prefix_only, other_offsets = [], [], []
        for r in rows:
            e = tok.encode(r["text"], add_special_tokens=False)
            theirs = [list(o) for o in e.offsets]
            if e.ids != r["ids"]:
                diff_ids.append(r["text"])
                log(f"    ids differ: {r['text']!r}: rule {r['pieces']} tokenizers {e.tokens}")
            elif theirs != r["offsets"]:
                # spm gives an inserted "▁" (dummy prefix) an empty span; tokenizers gives it the span of the
                # character it was prepended to
                bad = [i for i, (a, b) in enumerate(zip(r["offsets"], theirs)) if a != b]
                if all(r["pieces"][i] == "▁" and r["offsets"][i][0] == r["offsets"][i][1] == theirs[i][0] for i in bad):
                    prefix_only.append(r["text"])
                else:
                    other_offsets.append(r["text"])
                    if len(other_offsets) <= 12:
                        log(f"    offsets differ: {r['text']!r}: {[(r['pieces'][i], r['offsets'][i], theirs[i]) for i in bad]}")
        specials_differ = [t for t in diff_ids + other_offsets if any(x in t for x in TEXT_SPECIALS)]
        log(f"  rule vs tokenizers (all {len(rows)} strings): {len(diff_ids)} differ in ids, "
            f"{len(prefix_only)} only in the dummy-prefix span, {len(other_offsets)} in other offsets; "
            f"strings with specials among them: {specials_differ}")
    log(f"  tokenizers/spm/special.expected.json: {len(rows)} rows ({len(with_special)} with specials)")


# ----------------------------------------------------------------------------------------------
# Quantized references (-> Fixtures/models/<name>/reference.{int8,q4}.safetensors)
# ----------------------------------------------------------------------------------------------
#
# The runtime's quantization schemes (Sources/CQuantKernels/include/cquantkernels.h), simulated in
# float64 around transformers' own modules: every quantized nn.Linear gets a forward that casts its
# input to float32, quantizes it (float32 arithmetic, torch.round = ties to even), and computes
# y = Σ (integer codes) · (float32 scales) + bias in float64. Everything else (embeddings, LayerNorm,
# attention, softmax, conv, biases, the MLM decoder product with the word embeddings) stays float64.

QUANT_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
GROUPS["quant"] = QUANT_FIXTURES

QUANT_SCHEMES = ("int8", "q4")

# nn.Linear modules the runtime quantizes, by qualified module name (head models add `deberta.`).
QUANTIZED_LINEAR_PATTERNS = (
    r"(^|\.)attention\.self\.(query_proj|key_proj|value_proj|pos_key_proj|pos_query_proj)$",  # v2
    r"(^|\.)attention\.self\.(in_proj|pos_proj|pos_q_proj)$",  # v1
    r"(^|\.)attention\.output\.dense$",
    r"(^|\.)intermediate\.dense$",
    r"(^|\.)layer\.\d+\.output\.dense$",
    r"(^|\.)embeddings\.embed_proj$",
    r"^pooler\.dense$",
    r"^classifier$",
    r"^qa_outputs$",
    r"^lm_predictions\.lm_head\.dense$",
    r"^cls\.predictions\.transform\.dense$",
    r"^mask_predictions\.(dense|classifier)$",  # RTD discriminator head
)
# nn.Linear modules that stay float32: the legacy MLM decoder is the word-embedding matrix (tied).
UNQUANTIZED_LINEARS = ("cls.predictions.decoder",)


def quant_rows_int8(x32: torch.Tensor):
    """Symmetric int8 per row (last dim): s = max|x| / 127 (f32), q = clamp(rhe(x / s), ±127), 0 if s = 0."""
    assert x32.dtype == torch.float32
    s = x32.abs().amax(-1, keepdim=True) / 127
    q = torch.where(s > 0, torch.round(x32 / s), torch.zeros_like(x32)).clamp(-127, 127)
    return q, s


def quant_blocks32(x32: torch.Tensor) -> torch.Tensor:
    """[..., K] -> [..., ceil(K/32), 32], zero-padded along K."""
    K = x32.shape[-1]
    Kp = -(-K // 32) * 32
    x = nn.functional.pad(x32, (0, Kp - K))
    return x.reshape(*x.shape[:-1], Kp // 32, 32)


def quant_weight_q4(w32: torch.Tensor):
    """GGUF Q4_0 per 32-block of each row, f32 scale: d = m / -8 (m = the signed element of largest
    magnitude, first on ties), id = 1/d (0 if d = 0), q = min(15, trunc(x·id + 8.5)); value (q-8)·d."""
    assert w32.dtype == torch.float32 and w32.dim() == 2
    blk = quant_blocks32(w32)
    idx = blk.abs().argmax(-1, keepdim=True)  # torch returns the first maximal index
    m = blk.gather(-1, idx)
    d = m / -8
    inv = torch.where(d != 0, 1 / d, torch.zeros_like(d))
    t = blk * inv  # f32 multiply, then f32 add (two roundings, as ggml)
    t = t + 8.5
    q = t.to(torch.int8).clamp(max=15)  # float -> int8 truncates toward zero
    return q, d.squeeze(-1)


def quant_act_q8(x32: torch.Tensor):
    """q8 blocks of 32 along the last dim: d = max|x| / 127 (f32), q = clamp(rhe(x / d), ±127), 0 if d = 0."""
    blk = quant_blocks32(x32)
    d = blk.abs().amax(-1, keepdim=True) / 127
    q = torch.where(d > 0, torch.round(blk / d), torch.zeros_like(blk)).clamp(-127, 127)
    return q, d.squeeze(-1)


class QuantLinear:
    """The runtime's product for one linear layer (weight [out, in] f32, bias f32 or None)."""

    def __init__(self, weight: torch.Tensor, bias, scheme: str):
        w32 = weight.detach().to(torch.float32)
        if not torch.equal(w32.to(torch.float64), weight.detach().to(torch.float64)):
            raise AssertionError("weight is not exactly representable in float32")
        self.scheme = scheme
        self.record = None  # a list: the activation codes of every call are appended
        self.noise = None  # (generator, sigma): multiply the input by 1 + sigma * N(0, 1) per element
        self.out_features, self.in_features = w32.shape
        self.bias = None if bias is None else bias.detach().to(torch.float64)
        if scheme == "int8":
            q, s = quant_rows_int8(w32)
            self.qw, self.sw = q.to(torch.float64), s.to(torch.float64).reshape(1, -1)  # [N, K], [1, N]
        elif scheme == "q4":
            q, d = quant_weight_q4(w32)
            self.qw, self.dw = (q.to(torch.float64) - 8), d.to(torch.float64)  # [N, nb, 32], [N, nb]
        else:
            raise ValueError(scheme)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        assert shape[-1] == self.in_features
        if self.noise is not None:
            g, sigma = self.noise
            x = x * (1 + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype))
        x32 = x.reshape(-1, shape[-1]).to(torch.float32)
        if self.scheme == "int8":
            qx, sx = quant_rows_int8(x32)
            if self.record is not None:
                self.record.append(qx)
            acc = qx.to(torch.float64) @ self.qw.T  # exact integer sums
            y = (sx.to(torch.float64) * self.sw) * acc
        else:
            qx, dx = quant_act_q8(x32)  # [M, nb, 32], [M, nb]
            if self.record is not None:
                self.record.append(qx)
            qx, dx = qx.to(torch.float64), dx.to(torch.float64)
            y = torch.zeros(x32.shape[0], self.out_features, dtype=torch.float64)
            for b in range(qx.shape[1]):
                isum = qx[:, b, :] @ self.qw[:, b, :].T  # exact
                y += (dx[:, b : b + 1] * self.dw[:, b].reshape(1, -1)) * isum
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def tensor_scheme(scheme: str, name: str) -> str:
    """q4 stores keep the MLM head's transform dense layer in int8 (mixed precision, as GGUF's Q4_K_M keeps
    its most sensitive tensors at higher precision): the converter does the same (QuantizationScheme)."""
    if scheme == "q4" and (name.endswith("lm_predictions.lm_head.dense") or name.endswith("cls.predictions.transform.dense")):
        return "int8"
    return scheme


def quantized_linear_names(model: nn.Module) -> list:
    """Qualified names of the nn.Linear modules the runtime quantizes; every other nn.Linear must be
    listed in UNQUANTIZED_LINEARS (so a new head cannot silently stay float)."""
    import re

    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if any(re.search(p, name) for p in QUANTIZED_LINEAR_PATTERNS):
            names.append(name)
        elif name not in UNQUANTIZED_LINEARS:
            raise AssertionError(f"nn.Linear {name} is neither quantized nor known to stay float32")
    return names


class quantized_linears:
    """Within this context the quantized nn.Linear modules of `model` compute the runtime's product
    (instance-level forward override; removed on exit)."""

    def __init__(self, model: nn.Module, scheme: str, record: list | None = None, noise=None):
        self.model, self.scheme, self.record, self.noise = model, scheme, record, noise
        self.names = quantized_linear_names(model)

    def __enter__(self):
        mods = dict(self.model.named_modules())
        self.patched = []
        for name in self.names:
            mod = mods[name]
            mod.forward = QuantLinear(mod.weight, mod.bias, tensor_scheme(self.scheme, name))
            mod.forward.record = self.record
            mod.forward.noise = self.noise
            self.patched.append(mod)
        return self

    def __exit__(self, *exc):
        for mod in self.patched:
            del mod.forward
        return False


def check_quantizers() -> None:
    """The torch formulas against a literal per-element float32 transcription of the C kernels'
    scalar reference (numpy.float32 scalars: each operation rounds to f32), on rows with ties,
    zeros, a zero row and values that hit the q4 clamp."""
    g = torch.Generator().manual_seed(9901)
    w = (torch.randn(6, 70, generator=g) * 0.3).to(torch.float32)
    w[1, 3], w[1, 10] = 0.5, -0.5  # tie on |max| in block 0: the first (positive) one wins
    w[1, :32] = w[1, :32].clamp(-0.5, 0.5)
    w[2, 40], w[2, 41] = -0.8, 0.8  # tie, negative first
    w[2, 32:64] = w[2, 32:64].clamp(-0.8, 0.8)
    w[3] = 0.0
    w[4, :32] = torch.linspace(-1.0, 1.0 / 8 * 7.6, 32)  # elements of the opposite sign past 7.5|d|
    w[5, 5] = 1e-30
    f32 = np.float32
    q8, s8 = quant_rows_int8(w)
    q4, d4 = quant_weight_q4(w)
    qa, da = quant_act_q8(w)
    for o in range(w.shape[0]):
        row = [f32(v) for v in w[o].tolist()]
        s = f32(max(abs(v) for v in row)) / f32(127)
        assert f32(s8[o, 0].item()) == s
        for k, v in enumerate(row):
            exp = 0.0 if s == 0 else float(min(127.0, max(-127.0, np.rint(f32(v) / s))))
            assert q8[o, k].item() == exp, (o, k)
        padded = row + [f32(0)] * (96 - len(row))
        for b in range(3):
            x = padded[32 * b : 32 * b + 32]
            amax, m = f32(0), f32(0)
            for v in x:
                if abs(v) > amax:
                    amax, m = abs(v), v
            d = f32(m / f32(-8))
            inv = f32(f32(1) / d) if d != 0 else f32(0)
            assert f32(d4[o, b].item()) == d, (o, b)
            for j, v in enumerate(x):
                q = min(15, int(f32(f32(v * inv) + f32(8.5))))
                assert q4[o, b, j].item() == q, (o, b, j, q, q4[o, b, j].item())
            dx = f32(amax / f32(127))
            assert f32(da[o, b].item()) == dx
            for j, v in enumerate(x):
                exp = 0.0 if dx == 0 else float(min(127.0, max(-127.0, np.rint(f32(v / dx)))))
                assert qa[o, b, j].item() == exp, (o, b, j)
    assert q4[4, 0].max().item() == 15 and q4[1, 0, 3].item() == 0 and q4[2, 1, 8].item() == 0


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.reshape(-1).to(torch.float64), b.reshape(-1).to(torch.float64)
    return (a @ b / (a.norm() * b.norm())).item()


def valid_rows(t: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
    """Per-token outputs ([B, T, ...] matching the mask) restricted to attention_mask == 1; others whole."""
    if t.dim() >= 2 and tuple(t.shape[:2]) == tuple(mask2d.shape):
        return t[mask2d.bool()]
    return t


def agreement(ref: torch.Tensor, other: torch.Tensor, mask2d: torch.Tensor) -> dict:
    a, b = valid_rows(ref, mask2d).to(torch.float64), valid_rows(other, mask2d).to(torch.float64)
    return {
        "cosine": float(f"{cosine(a, b):.9f}"),
        "max_abs_diff": float(f"{(a - b).abs().max().item():.6g}"),
        "max_abs_f32": float(f"{a.abs().max().item():.6g}"),
    }


# Sensitivity of a quantized reference to float32 rounding: an activation within a few ulps of a
# rounding boundary can get the neighbouring integer code in a float32 runtime, and one such flip moves
# the outputs by up to ~1e-2 of their scale (the change propagates through attention and later
# layers). The generator reruns the simulation with every quantized linear's input multiplied by
# 1 + sigma·N(0, 1) per element (sigma ≈ 2.5 float32 ulps, like a runtime's own rounding) for a few
# seeds, and records how far those equally valid results are from the reference.
QUANT_SENSITIVITY_SIGMA = 3e-7
QUANT_SENSITIVITY_SEEDS = 8
RUNTIME_TOLERANCE = {"min_cosine": 0.99999, "max_abs_diff_over_max_abs": 1e-3}  # the runtime test's criteria


def worst_agreement(base: dict, other: dict, mask2d: torch.Tensor) -> dict:
    """min cosine and max (max |diff| / max |base|) over the outputs, on valid positions."""
    cos, rel = 1.0, 0.0
    for k, a in base.items():
        a, b = valid_rows(a, mask2d).to(torch.float64), valid_rows(other[k], mask2d).to(torch.float64)
        cos = min(cos, cosine(a, b))
        rel = max(rel, ((a - b).abs().max() / a.abs().max()).item())
    return {"min_cosine": float(f"{cos:.9f}"), "max_abs_diff_over_max_abs": float(f"{rel:.3g}")}


def within_tolerance(w: dict) -> bool:
    return (w["min_cosine"] >= RUNTIME_TOLERANCE["min_cosine"]
            and w["max_abs_diff_over_max_abs"] <= RUNTIME_TOLERANCE["max_abs_diff_over_max_abs"])


@torch.no_grad()
def quant_sensitivity(model, run, scheme: str, base: dict, mask2d: torch.Tensor) -> dict:
    runs = []
    for seed in range(QUANT_SENSITIVITY_SEEDS):
        g = torch.Generator().manual_seed(12000 + seed)
        with quantized_linears(model, scheme, noise=(g, QUANT_SENSITIVITY_SIGMA)):
            out = run(checked=False)
        runs.append(worst_agreement(base, out, mask2d))
    return {
        "sigma": QUANT_SENSITIVITY_SIGMA,
        "seeds": QUANT_SENSITIVITY_SEEDS,
        "min_cosine": min(r["min_cosine"] for r in runs),
        "max_abs_diff_over_max_abs": max(r["max_abs_diff_over_max_abs"] for r in runs),
        "seeds_outside_runtime_tolerance": sum(not within_tolerance(r) for r in runs),
    }


def read_reference(path: Path):
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return tensors, meta


def quant_runner(name: str, d: Path, inputs: dict):
    """(model, run) for a model fixture: run() recomputes the fixture's reference outputs in float64
    exactly as its generator does (checked against reference.safetensors by the caller)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    types = inputs.get("token_type_ids")
    kw = {"token_type_ids": types} if types is not None else {}

    if name in ("v3-mlm", "v3-mlm-trained"):
        model = load_f64(DebertaV2ForMaskedLM, d, allowed_unexpected=["deberta.embeddings.position_embeddings.weight"])
        pos_table = load_file(str(d / "model.safetensors"))["deberta.embeddings.position_embeddings.weight"].double()

        def run(checked: bool = True):
            if not checked:  # perturbed runs: the replayed last layer gets different noise
                h, logits, emd = mlm_forward(model, pos_table, ids, mask)
                return {"last_hidden_state": h, "logits": logits, "emd_logits": emd}
            base = model.deberta(ids, attention_mask=mask, output_hidden_states=True)
            logits = model.lm_predictions(base.last_hidden_state, model.deberta.embeddings.word_embeddings)
            emd = emd_logits(model, pos_table, ids, mask, base.hidden_states)
            return {"last_hidden_state": base.last_hidden_state, "logits": logits, "emd_logits": emd}

        return model, run
    if name == "v3-rtd":
        tensors = load_file(str(d / "model.safetensors"))
        model = load_f64(
            DebertaV2Model,
            d,
            allowed_unexpected=[k for k in tensors if k.startswith("mask_predictions.")]
            + ["embeddings.position_embeddings.weight", "deberta.embeddings.position_embeddings.weight"],
        )
        head = RTDHead(model.config.hidden_size, model.config.layer_norm_eps)
        head.load_state_dict({k[len("mask_predictions.") :]: v for k, v in tensors.items() if k.startswith("mask_predictions.")})
        head = head.double().eval()
        assert model.config.hidden_act == "gelu"
        holder = nn.ModuleDict({"deberta": model, "mask_predictions": head})  # names for the patch list

        def run(checked: bool = True):
            h = model(ids, attention_mask=mask).last_hidden_state
            x = h + h[:, :1]
            x = head.LayerNorm(x)
            x = transformers.activations.ACT2FN[model.config.hidden_act](head.dense(x))
            return {"last_hidden_state": h, "logits": head.classifier(x).squeeze(-1)}

        return holder, run

    classes = {
        "v2-conv-seqcls": DebertaV2ForSequenceClassification,
        "v2-sep-c2p-tokcls": DebertaV2ForTokenClassification,
        "v2-qa-sharded": DebertaV2ForQuestionAnswering,
        "v2-mc-bin-sharded": DebertaV2ForMultipleChoice,
        "v1-mlm": DebertaForMaskedLM,
        "v1-seqcls-noarch": DebertaForSequenceClassification,
    }
    model = load_f64(classes[name], d)

    def run(checked: bool = True):
        if name == "v2-mc-bin-sharded":
            T = ids.shape[-1]
            base = model.deberta(ids.view(-1, T), attention_mask=mask.view(-1, T))
        else:
            base = model.deberta(ids, attention_mask=mask, **kw)
        out = model(ids, attention_mask=mask, **kw)
        res = {"last_hidden_state": base.last_hidden_state}
        if name == "v2-qa-sharded":
            res.update(start_logits=out.start_logits, end_logits=out.end_logits)
        else:
            res["logits"] = out.logits
        return res

    if name.startswith("v1-"):
        def run_v1(checked: bool = True):
            with float64_v1_layernorm():
                return run()

        return model, run_v1
    return model, run


@torch.no_grad()
def write_quant_references(root: Path, name: str) -> dict:
    """reference.int8.safetensors and reference.q4.safetensors beside models/<name>/reference.safetensors:
    same inputs, same output names, outputs of the scheme's simulation (float64, stored F32)."""
    d = root / "models" / name
    ref, ref_meta = read_reference(d / "reference.safetensors")
    input_names = [k for k in ("input_ids", "attention_mask", "token_type_ids", "masked_positions", "labels") if k in ref]
    inputs = {k: ref[k] for k in input_names}
    output_names = [k for k in ref if k not in inputs]
    model, run = quant_runner(name, d, inputs)
    mask2d = inputs["attention_mask"].reshape(-1, inputs["attention_mask"].shape[-1])

    plain = run()
    assert sorted(plain) == sorted(output_names), (sorted(plain), output_names)
    for k in output_names:  # the float64 recomputation is the fixture's reference
        err = (plain[k].to(torch.float32) - ref[k]).abs().max().item()
        assert err <= 1e-6 * ref[k].abs().max().item(), f"{name}:{k} recomputation differs by {err}"

    check_quantizers()
    results = {}
    for scheme in QUANT_SCHEMES:
        codes = []
        q = quantized_linears(model, scheme, record=codes)
        with q:
            out = run()
        agree = {k: agreement(ref[k], out[k], mask2d) for k in output_names}
        results[scheme] = (out, agree)
        # Conditioning: the same simulation with a float32 model (what a faithful float32 runtime
        # computes, up to its own rounding). An activation within an ulp of a rounding boundary can
        # quantize to the neighbouring code there; count those flips and their effect on the outputs.
        model32, run32 = quant_runner(name, d, inputs)
        model32.float()
        codes32 = []
        with quantized_linears(model32, scheme, record=codes32):
            out32 = run32()
        assert len(codes) == len(codes32)
        flips = sum(int((a != b).sum()) for a, b in zip(codes, codes32))
        n_codes = sum(a.numel() for a in codes)
        sim32 = {k: agreement(out[k], out32[k].to(torch.float64), mask2d) for k in output_names}
        worst_rel = max(v["max_abs_diff"] / v["max_abs_f32"] for v in sim32.values())
        worst_cos = min(v["cosine"] for v in sim32.values())
        sim32_ok = within_tolerance({"min_cosine": worst_cos, "max_abs_diff_over_max_abs": worst_rel})
        meta_sim32 = {
            "activation_codes": n_codes,
            "code_flips": flips,
            "min_cosine": worst_cos,
            "max_abs_diff_over_max_abs": float(f"{worst_rel:.3g}"),
            "within_runtime_tolerance": sim32_ok,
        }
        sensitivity = quant_sensitivity(model, run, scheme, {k: out[k] for k in output_names}, mask2d)
        meta = {
            "architecture": ref_meta["architecture"],
            "model_type": ref_meta["model_type"],
            "scheme": scheme,
            "rounding_sensitivity": json.dumps(sensitivity, sort_keys=True),
            "quantize_embeddings": "false",
            "quantized_linears": ",".join(q.names),
            "agreement_with_f32_reference": json.dumps(agree, sort_keys=True),
            "f32_reference": "reference.safetensors",
            "float32_simulation_agreement": json.dumps(meta_sim32, sort_keys=True),
            **versions_metadata(),
        }
        if "masked_positions" in inputs:  # trained MLM: top-1 at the [MASK] positions
            sel = inputs["masked_positions"].bool()
            y = inputs["labels"][sel]
            top1 = {}
            for k in ("logits", "emd_logits"):
                a, b = ref[k][sel].argmax(-1), out[k][sel].argmax(-1)
                top1[k] = {
                    "masked_positions": int(sel.sum()),
                    "agreement_with_f32": round((a == b).double().mean().item(), 6),
                    "accuracy": round((b == y).double().mean().item(), 6),
                    "f32_accuracy": round((a == y).double().mean().item(), 6),
                }
            meta["masked_top1"] = json.dumps(top1, sort_keys=True)
            log(f"    {scheme} masked top-1: {top1}")
        tensors = {k: v.to(torch.int64).contiguous() for k, v in inputs.items()}
        for k in output_names:
            assert_finite(f"{name}/reference.{scheme}:{k}", out[k])
            tensors[k] = out[k].detach().to(torch.float32).contiguous()
        path = d / f"reference.{scheme}.safetensors"
        save_st(tensors, path, metadata=meta)
        summary = "; ".join(f"{k} cos {v['cosine']:.6f} max|Δ| {v['max_abs_diff']:.3g} (max|f32| {v['max_abs_f32']:.3g})" for k, v in agree.items())
        log(f"    models/{name}/{path.name}: {len(q.names)} quantized linears; vs f32: {summary}")
        log(f"      float32 simulation of the same scheme: {flips} of {n_codes} activation codes differ; "
            f"min cosine {worst_cos:.9f}, max |diff| / max |value| {worst_rel:.2e}"
            + ("" if sim32_ok else "  <-- outside cos >= 0.99999 / 1e-3"))
        log(f"      rounding sensitivity (inputs x (1 + {QUANT_SENSITIVITY_SIGMA:g} N(0,1)), {QUANT_SENSITIVITY_SEEDS} seeds): "
            f"min cosine {sensitivity['min_cosine']:.9f}, max |diff| / max |value| {sensitivity['max_abs_diff_over_max_abs']:.2e}, "
            f"{sensitivity['seeds_outside_runtime_tolerance']} of {QUANT_SENSITIVITY_SEEDS} seeds outside cos >= 0.99999 / 1e-3")
    return results


HELDOUT_SEQUENCES = 256


@torch.no_grad()
def write_trained_heldout(root: Path) -> dict:
    """models/v3-mlm-trained/heldout.safetensors: an argmax-agreement set large enough for the
    runtime's accuracy targets (the 34 [MASK] positions of reference.safetensors are too few for a
    95% criterion). 256 held-out chunks (evenly spaced over the held-out text; same corpus as the
    training, checked by its sha256 in training.json), [MASK] at 15% of the maskable positions;
    the float64 model's and the int8 / q4 simulations' top-1 predictions at the masked positions."""
    d = root / "models" / "v3-mlm-trained"
    info = json.loads((d / "training.json").read_text())
    sp = spm.SentencePieceProcessor(model_file=str(d / "spm.model"))
    _, held_texts, corpus = trained_corpus()
    if corpus["sha256"] != info["corpus"]["sha256"]:
        raise AssertionError(
            "v3-mlm-trained: this machine's corpus differs from the one the model was trained on "
            f"({corpus['sha256'][:16]} vs {info['corpus']['sha256'][:16]}): regenerate v3-mlm-trained first"
        )
    held = token_chunks(sp, held_texts)
    pick = torch.linspace(0, len(held) - 1, HELDOUT_SEQUENCES).round().long()
    chunks = held[pick]
    g = torch.Generator().manual_seed(11005)
    ids, labels = mlm_mask(chunks, g, bert_mix=False)
    mask = torch.ones_like(ids)
    sel = labels != -100
    model = load_f64(DebertaV2ForMaskedLM, d, allowed_unexpected=["deberta.embeddings.position_embeddings.weight"])
    pos = load_file(str(d / "model.safetensors"))["deberta.embeddings.position_embeddings.weight"].double()

    def predict():
        top = {"logits": [], "emd_logits": []}
        for i in range(0, len(ids), 64):
            _, p, e = mlm_forward(model, pos, ids[i : i + 64], mask[i : i + 64])
            s_ = sel[i : i + 64]
            top["logits"].append(p[s_].argmax(-1))
            top["emd_logits"].append(e[s_].argmax(-1))
        return {k: torch.cat(v) for k, v in top.items()}

    preds = {"f32": predict()}
    for scheme in QUANT_SCHEMES:
        with quantized_linears(model, scheme):
            preds[scheme] = predict()
    y = labels[sel]
    stats = {"sequences": HELDOUT_SEQUENCES, "masked_positions": int(sel.sum())}
    for variant, p in preds.items():
        for k, top in p.items():
            stats[f"{variant}.{k}.top1_accuracy"] = round((top == y).double().mean().item(), 6)
            if variant != "f32":
                stats[f"{variant}.{k}.agreement_with_f32"] = round((top == preds["f32"][k]).double().mean().item(), 6)
    tensors = {"input_ids": ids, "attention_mask": mask, "masked_positions": sel.to(torch.int64), "labels": labels}
    for variant, p in preds.items():
        for k, top in p.items():
            tensors[f"{variant}_top1_{k}"] = top.to(torch.int64)
    meta = {
        "architecture": "DebertaV2ForMaskedLM",
        "model_type": "deberta-v2",
        "contents": "top-1 predictions at the masked positions (row-major order of masked_positions) of the "
        "float64 model (f32_*) and of the int8 / q4 simulations (int8_*, q4_*)",
        "corpus_sha256": corpus["sha256"],
        "stats": json.dumps(stats, sort_keys=True),
        **versions_metadata(),
    }
    save_st({k: v.contiguous() for k, v in tensors.items()}, d / "heldout.safetensors", metadata=meta)
    log(f"    models/v3-mlm-trained/heldout.safetensors: {json.dumps(stats)}")
    return stats


def _register_quant(name: str) -> None:
    @fixture(QUANT_FIXTURES, f"quant-{name}")
    def _fn(root: Path) -> None:
        write_quant_references(root, name)
        if name == "v3-mlm-trained":
            write_trained_heldout(root)

    _fn.__name__ = f"quant_{name.replace('-', '_')}"


# ----------------------------------------------------------------------------------------------
# A small trained DeBERTa-v3-shaped masked LM (models/v3-mlm-trained): accuracy, not just exactness
# ----------------------------------------------------------------------------------------------

TRAINED_T = 64  # sequence length of the training / evaluation chunks ([CLS] 62 pieces [SEP])
TRAINED_STEPS = 1200
TRAINED_BATCH = 32
TRAINED_LR = 1e-3
TRAINED_THREADS = 2
# Stdlib directories whose docstrings are not used (tests, GUI demos, vendored packages).
TRAINED_STDLIB_SKIP = {"test", "tests", "idlelib", "site-packages", "dist-packages", "turtledemo", "lib2to3", "tkinter"}
LICENSES_DIR = Path("/usr/share/common-licenses")


def trained_config() -> DebertaV2Config:
    return v3_config(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=128,
        position_buckets=64,
        max_relative_positions=-1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.02,
    )


def trained_corpus():
    """English text that a Debian machine with python3 has: the docstrings (module, class, function;
    >= 40 characters, white space collapsed) of the running interpreter's standard library, read with
    `ast` from the sorted *.py files, and /usr/share/common-licenses/* (regular files). A stdlib file
    is held out (never trained on) when crc32(its relative path) % 10 == 0; the licenses are training
    text only. Returns (train_texts, heldout_texts, description)."""
    import ast
    import hashlib
    import sysconfig
    import zlib

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, held = [], []
    n_files = n_held_files = 0
    for p in sorted(stdlib.rglob("*.py")):
        rel = p.relative_to(stdlib).as_posix()
        if TRAINED_STDLIB_SKIP & set(rel.split("/")[:-1]):
            continue
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 40:
                    docs.append(" ".join(doc.split()))
        if not docs:
            continue
        n_files += 1
        if zlib.crc32(rel.encode("utf-8")) % 10 == 0:
            held += docs
            n_held_files += 1
        else:
            train += docs
    licenses = []
    if LICENSES_DIR.is_dir():
        licenses = [p for p in sorted(LICENSES_DIR.iterdir()) if p.is_file() and not p.is_symlink()]
    else:
        log(f"    WARNING: {LICENSES_DIR} missing: training on stdlib docstrings only")
    train += [" ".join(p.read_text(encoding="utf-8", errors="replace").split()) for p in licenses]
    h = hashlib.sha256()
    for t in train + ["\0held-out\0"] + held:
        h.update(t.encode("utf-8") + b"\n")
    desc = {
        "python": sys.version.split()[0],
        "stdlib": str(stdlib),
        "stdlib_files_with_docstrings": n_files,
        "heldout_stdlib_files": n_held_files,
        "licenses": [p.name for p in licenses],
        "train_texts": len(train),
        "heldout_texts": len(held),
        "train_chars": sum(len(t) for t in train),
        "heldout_chars": sum(len(t) for t in held),
        "sha256": h.hexdigest(),
    }
    return train, held, desc


def token_chunks(sp, texts, T: int = TRAINED_T) -> torch.Tensor:
    """Concatenate the texts' spm ids and cut [CLS] + (T-2) pieces + [SEP] rows (the tail is dropped)."""
    ids = []
    for t in texts:
        ids += sp.encode(t)
    L = T - 2
    n = len(ids) // L
    body = torch.tensor(ids[: n * L], dtype=torch.long).view(n, L)
    return torch.cat([torch.full((n, 1), CLS), body, torch.full((n, 1), SEP)], 1)


def mlm_mask(x: torch.Tensor, g: torch.Generator, bert_mix: bool):
    """15% of the maskable positions (real pieces 4..MASK_ID-1: not special, not [UNK], not pad);
    bert_mix: 80% [MASK], 10% a random piece, 10% unchanged; otherwise all [MASK]."""
    cand = (x >= 4) & (x < MASK_ID)
    sel = (torch.rand(x.shape, generator=g) < 0.15) & cand
    labels = torch.where(sel, x, torch.full_like(x, -100))
    r = torch.rand(x.shape, generator=g)
    rnd = torch.randint(4, MASK_ID, x.shape, generator=g)
    inp = x.clone()
    if bert_mix:
        inp[sel & (r < 0.8)] = MASK_ID
        swap = sel & (r >= 0.8) & (r < 0.9)
        inp[swap] = rnd[swap]
    else:
        inp[sel] = MASK_ID
    return inp, labels


def mlm_forward(model, pos_table, ids, mask):
    """(hidden, plain logits, EMD logits) with gradients; the EMD as `emd_logits` computes it."""
    out = model.deberta(ids, attention_mask=mask, output_hidden_states=True)
    enc = model.deberta.encoder
    H = out.hidden_states[-2]
    att_mask = enc.get_attention_mask(mask)
    rel_pos = enc.get_rel_pos(out.hidden_states[0])
    rel_emb = enc.get_rel_embedding()
    layer = enc.layer[-1]
    query = pos_table[: ids.shape[1]].unsqueeze(0) + H
    for _ in range(2):
        query = layer(H, att_mask, query_states=query, relative_pos=rel_pos, rel_embeddings=rel_emb)[0]
    we = model.deberta.embeddings.word_embeddings
    return out.last_hidden_state, model.lm_predictions(out.last_hidden_state, we), model.lm_predictions(query, we)


def train_trained_mlm(cfg, chunks: torch.Tensor, steps: int = TRAINED_STEPS):
    """Pretraining as DeBERTa-v3's MLM: loss = CE(EMD logits) + CE(plain head logits) at the masked
    positions (80/10/10), AdamW (lr 1e-3, betas 0.9/0.98, wd 0.01, linear warmup 5% then linear decay),
    batch 32 random chunks, grad-norm clip 1, float32, TRAINED_THREADS threads. Deterministic."""
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAINED_THREADS)
    try:
        torch.manual_seed(11001)
        model = DebertaV2ForMaskedLM(cfg)  # transformers' init: N(0, 0.02), LayerNorm 1/0, biases 0
        g = torch.Generator().manual_seed(11002)
        pos_table = nn.Parameter(0.02 * torch.randn(cfg.max_position_embeddings, cfg.hidden_size, generator=g))
        params = list(model.parameters()) + [pos_table]
        opt = torch.optim.AdamW(params, lr=TRAINED_LR, betas=(0.9, 0.98), weight_decay=0.01)
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / (steps - warm))
        )
        ce = nn.CrossEntropyLoss()
        model.train()
        losses, t0, running = [], time.time(), 0.0
        for step in range(steps):
            x = chunks[torch.randint(0, len(chunks), (TRAINED_BATCH,), generator=g)]
            inp, labels = mlm_mask(x, g, bert_mix=True)
            _, plain, emd = mlm_forward(model, pos_table, inp, torch.ones_like(inp))
            V = plain.shape[-1]
            loss = ce(emd.reshape(-1, V), labels.reshape(-1)) + ce(plain.reshape(-1, V), labels.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            running += loss.item()
            if (step + 1) % 100 == 0 or step + 1 == steps:
                n = (step % 100) + 1
                losses.append([step + 1, round(running / n, 4)])
                log(f"    step {step + 1}/{steps}: mean loss (EMD + plain) {running / n:.3f}  [{time.time() - t0:.0f} s]")
                running = 0.0
        model.eval()
        return model, pos_table.detach().clone(), losses
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def mlm_heldout_eval(model, pos_table, chunks: torch.Tensor, seed: int, schemes=("int8", "q4"), batch: int = 64) -> dict:
    """Held-out masked-token accuracy in float64 ([MASK] at 15% of the maskable positions), and for
    each quantization scheme the simulated model's accuracy, top-1 agreement with the unquantized
    model at the masked positions, and the cosine of last_hidden_state (flattened over all tokens,
    and per token: mean and min)."""
    g = torch.Generator().manual_seed(seed)
    inp, labels = mlm_mask(chunks, g, bert_mix=False)
    sel = labels != -100
    counts = torch.bincount(chunks[:, 1:-1].reshape(-1), minlength=model.config.vocab_size)
    res = {"sequences": len(chunks), "masked_positions": int(sel.sum())}

    def run_all():
        hs, pl, em = [], [], []
        for i in range(0, len(inp), batch):
            ids = inp[i : i + batch]
            h, p, e = mlm_forward(model, pos_table, ids, torch.ones_like(ids))
            hs.append(h)
            pl.append(p[sel[i : i + batch]])
            em.append(e[sel[i : i + batch]])
        return torch.cat(hs), torch.cat(pl), torch.cat(em)

    h0, p0, e0 = run_all()
    y = labels[sel]
    res["f32"] = {"plain_top1": (p0.argmax(-1) == y).double().mean().item(), "emd_top1": (e0.argmax(-1) == y).double().mean().item()}
    res["baseline_most_frequent_piece_top1"] = (y == counts[4:MASK_ID].argmax() + 4).double().mean().item()
    for scheme in schemes:
        with quantized_linears(model, scheme):
            h1, p1, e1 = run_all()
        a, b = h0.reshape(-1, h0.shape[-1]), h1.reshape(-1, h1.shape[-1])
        tok_cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        res[scheme] = {
            "plain_top1": (p1.argmax(-1) == y).double().mean().item(),
            "emd_top1": (e1.argmax(-1) == y).double().mean().item(),
            "plain_agreement_with_f32": (p1.argmax(-1) == p0.argmax(-1)).double().mean().item(),
            "emd_agreement_with_f32": (e1.argmax(-1) == e0.argmax(-1)).double().mean().item(),
            "hidden_cosine": cosine(h0, h1),
            "hidden_cosine_per_token_mean": tok_cos.mean().item(),
            "hidden_cosine_per_token_min": tok_cos.min().item(),
        }
    return json.loads(json.dumps(res), parse_float=lambda s: round(float(s), 6))


@fixture(MODEL_FIXTURES, "v3-mlm-trained")
def fixture_v3_mlm_trained(root: Path) -> None:
    d = fresh_dir(root / "models" / "v3-mlm-trained")
    src = root / "models" / "v3-mlm"
    for f in ("spm.model", "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / f, d / f)
    assert json.loads((d / "added_tokens.json").read_text()) == {"[MASK]": MASK_ID}
    sp = spm.SentencePieceProcessor(model_file=str(d / "spm.model"))
    assert sp.get_piece_size() == SPM_PIECES

    train_texts, held_texts, corpus = trained_corpus()
    train_chunks, held_chunks = token_chunks(sp, train_texts), token_chunks(sp, held_texts)
    corpus.update(train_chunks=len(train_chunks), heldout_chunks=len(held_chunks), chunk_tokens=TRAINED_T)
    log(f"    corpus: {corpus['train_chars']} + {corpus['heldout_chars']} held-out chars, "
        f"{len(train_chunks)} + {len(held_chunks)} chunks of {TRAINED_T}, sha256 {corpus['sha256'][:16]}")

    cfg = trained_config()
    model, pos_table, losses = train_trained_mlm(cfg, train_chunks)
    save_safetensors_pretrained(model, d, extra={"deberta.embeddings.position_embeddings.weight": pos_table})
    ref = load_f64(DebertaV2ForMaskedLM, d, allowed_unexpected=["deberta.embeddings.position_embeddings.weight"])
    assert_same_params(model, ref, "v3-mlm-trained")
    pos64 = load_file(str(d / "model.safetensors"))["deberta.embeddings.position_embeddings.weight"].double()

    # Reference batch: 4 held-out chunks from different parts of the held-out text, two shortened
    # (padded), [MASK] at 15% (rounded) of each row's maskable positions.
    g = torch.Generator().manual_seed(11003)
    picks = [k * len(held_chunks) // 4 for k in range(4)]
    lengths = [TRAINED_T, TRAINED_T, 56, 40]
    rows, masked, labels = [], torch.zeros(4, TRAINED_T, dtype=torch.long), torch.full((4, TRAINED_T), -100, dtype=torch.long)
    for b, (c, L) in enumerate(zip(picks, lengths)):
        row = held_chunks[c, : L - 1].tolist() + [SEP]
        cand = [i for i, t in enumerate(row) if 4 <= t < MASK_ID]
        chosen = sorted(cand[i] for i in torch.randperm(len(cand), generator=g)[: round(0.15 * L)].tolist())
        for i in chosen:
            labels[b, i] = row[i]
            masked[b, i] = 1
            row[i] = MASK_ID
        rows.append(row)
    ids, mask = pad_rows(rows, TRAINED_T)
    assert (mask == 0).any() and bucket_check(TRAINED_T, cfg.position_buckets, cfg.max_position_embeddings) > 0
    with torch.no_grad():
        base = ref.deberta(ids, attention_mask=mask, output_hidden_states=True)
        out = ref(ids, attention_mask=mask)
        emd = emd_logits(ref, pos64, ids, mask, base.hidden_states)
    run_backbone_checks("v3-mlm-trained", ref.deberta, ids, mask, None, base.last_hidden_state)
    save_reference(
        d / "reference.safetensors",
        {"input_ids": ids, "attention_mask": mask, "masked_positions": masked, "labels": labels},
        {"last_hidden_state": base.last_hidden_state, "logits": out.logits, "emd_logits": emd},
        "DebertaV2ForMaskedLM",
        cfg.model_type,
    )
    sel = masked.bool()
    ref_batch = {
        "masked_positions": int(sel.sum()),
        "plain_top1": round((out.logits[sel].argmax(-1) == labels[sel]).double().mean().item(), 6),
        "emd_top1": round((emd[sel].argmax(-1) == labels[sel]).double().mean().item(), 6),
    }
    log(f"    reference batch: {ref_batch}")

    # Held-out accuracy of the float64 model and of the int8 / q4 simulations (all held-out chunks).
    ref_pos = nn.Parameter(pos64, requires_grad=False)
    heldout = mlm_heldout_eval(ref, ref_pos, held_chunks, seed=11004)
    log(f"    held-out: {json.dumps(heldout)}")
    write_json(
        d / "training.json",
        {
            "corpus": corpus,
            "training": {
                "steps": TRAINED_STEPS,
                "batch": TRAINED_BATCH,
                "sequence_tokens": TRAINED_T,
                "optimizer": "AdamW lr 1e-3 betas (0.9, 0.98) weight_decay 0.01, 5% linear warmup then linear decay, grad-norm clip 1.0",
                "loss": "cross-entropy of the EMD logits + cross-entropy of the plain lm_predictions logits at masked positions",
                "masking": "15% of maskable pieces (ids 4..299): 80% [MASK], 10% random piece, 10% unchanged",
                "init": "transformers N(0, 0.02); position table N(0, 0.02)",
                "threads": TRAINED_THREADS,
                "seeds": [11001, 11002],
                "loss_every_100_steps": losses,
            },
            "reference_batch": ref_batch,
            "heldout": heldout,
            **versions_metadata(),
        },
    )

# Quantized references for every model fixture, in the models group's order (quant-<model name>).
for _name in list(MODEL_FIXTURES):
    _register_quant(_name)



# ----------------------------------------------------------------------------------------------
# Tokenizers for the task models (end-to-end tests of the text commands)
# ----------------------------------------------------------------------------------------------

TASK_TOKENIZER_FIXTURES: "OrderedDict[str, callable]" = OrderedDict()
GROUPS["task-tokenizers"] = TASK_TOKENIZER_FIXTURES

V1_SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


@fixture(TASK_TOKENIZER_FIXTURES, "task-tokenizers")
def task_tokenizers(root: Path) -> None:
    """Ship a tokenizer with every task model so `deberta classify/zero-shot/ner/qa` run end to end:
    the v3 spm.model (300 pieces) in the deberta-v2 task models (their vocabularies hold >= 300 ids;
    [MASK] = 300 is declared only where the vocabulary has room for it), and a 300-id byte-level BPE
    (specials [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 [MASK]=4, then 256 bytes and 39 merges) in the v1 models.
    Weights and references are unchanged (the references use fixed ids, not text)."""
    spm_dir = root / "models" / "v3-mlm"
    for name in ["v2-conv-seqcls", "v2-sep-c2p-tokcls", "v2-qa-sharded", "v3-rtd"]:
        d = root / "models" / name
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["vocab_size"] >= SPM_PIECES, name
        shutil.copyfile(spm_dir / "spm.model", d / "spm.model")
        shutil.copyfile(spm_dir / "special_tokens_map.json", d / "special_tokens_map.json")
        shutil.copyfile(spm_dir / "tokenizer_config.json", d / "tokenizer_config.json")
        if cfg["vocab_size"] > MASK_ID:
            write_json(d / "added_tokens.json", {"[MASK]": MASK_ID})
        elif (d / "added_tokens.json").exists():
            (d / "added_tokens.json").unlink()
        log(f"  models/{name}: spm.model ({SPM_PIECES} pieces){' + [MASK]' if cfg['vocab_size'] > MASK_ID else ''}")

    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(SPM_CORPUS.splitlines() * 4, vocab_size=300, min_frequency=2, special_tokens=V1_SPECIALS,
                            show_progress=False)
    assert bpe.get_vocab_size() == 300, bpe.get_vocab_size()
    for name in ["v1-mlm", "v1-seqcls-noarch"]:
        d = root / "models" / name
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["vocab_size"] >= 300, name
        bpe.save_model(str(d))  # vocab.json + merges.txt
        write_json(d / "special_tokens_map.json", {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                                   "unk_token": "[UNK]", "mask_token": "[MASK]"})
        log(f"  models/{name}: vocab.json + merges.txt (300 ids)")


# Pipeline outputs (Tools/fixtures/pipelines.py): after every model fixture they read.
from fixtures import pipelines as pipeline_fixtures  # noqa: E402

PIPELINE_FIXTURES: "OrderedDict[str, callable]" = OrderedDict([("pipelines", pipeline_fixtures.record)])
GROUPS["pipelines"] = PIPELINE_FIXTURES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture root (default: Fixtures/)")
    ap.add_argument("--only", nargs="*", default=None, help="fixture names to regenerate")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    ap.add_argument("--allow-version-mismatch", action="store_true")
    args = ap.parse_args(argv)

    if args.list:
        for group, fixtures in GROUPS.items():
            for name in fixtures:
                print(f"{group}/{name}")
        return 0
    check_versions(args.allow_version_mismatch)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    known = {n for fixtures in GROUPS.values() for n in fixtures}
    if args.only:
        unknown = set(args.only) - known
        if unknown:
            ap.error(f"unknown fixtures: {sorted(unknown)}")
    root = args.out.resolve()
    for group, fixtures in GROUPS.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        for name, fn in fixtures.items():
            if args.only and name not in args.only:
                continue
            log(f"[{group}] {name}")
            fn(root)
    log("[summary]")
    summarize(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
