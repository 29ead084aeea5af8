#!/usr/bin/env python3
"""Tokenizer throughput: our Swift SentencePieceTokenizer vs the sentencepiece Python binding and the
tokenizers library, on ~10 MB of generated text, one encode per line.

Usage (from the repository root, with the pinned reference venv):

    /work/venv-ref/bin/python Tools/bench_tokenizers.py               # builds tokenizer-bench (release) first
    /work/venv-ref/bin/python Tools/bench_tokenizers.py --mb 2 --no-build

What it does:
  1. writes a deterministic text file (default 10 MB, seeded): sentences of a Zipf-distributed synthetic
     lexicon (~20k word types) mixed with English corpus words, numbers and punctuation, and 15% of lines
     drawn from Fixtures/tokenizers/strings.json (CJK, emoji, combining marks, full-width, ...);
  2. tokenizers: Fixtures/tokenizers/spm/spm.model (300 pieces) and a 16k-piece unigram model trained by
     sentencepiece on the first tenth of that text (cached in the work directory), each also converted to a DeBERTa-v3
     tokenizer.json with transformers' DebertaV2Converter;
  3. times, per model (best of --repeat runs):
       sentencepiece: a Python loop `sp.encode(line)`, and `sp.encode(lines, num_threads=1)` (batch, C++ loop)
       tokenizers:    `Tokenizer.encode_batch(lines, add_special_tokens=False)` with RAYON_NUM_THREADS=1
       ours:          `tokenizer-bench <text> <spm.model>` and `<tokenizer.json>` (one thread, a loop over lines)
     and checks that our ids equal the reference ids (an FNV-1a checksum over every id in order).
Everything runs on one thread unless --threads is given (then ours and sentencepiece's batch also run with N).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool

import sentencepiece as spm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "Tools"))


def fnv1a(ids_iter) -> int:
    h = 0xCBF29CE484222325
    for ids in ids_iter:
        for i in ids:
            h = ((h ^ (i & 0xFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def make_text(path: Path, megabytes: float, seed: int = 1234) -> None:
    from fixtures.tokenization import SPM_CORPUS

    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ["a", "e", "i", "o", "u", "ai", "ou", "ea"]]
    lexicon = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(30000)})
    rng.shuffle(lexicon)
    lexicon = lexicon[:20000]
    cum, total = [], 0.0
    for r in range(len(lexicon)):
        total += 1.0 / (r + 10)  # Zipf-like
        cum.append(total)
    english = SPM_CORPUS.split()
    strings = json.loads((REPO / "Fixtures/tokenizers/strings.json").read_text(encoding="utf-8"))
    strings = [s.replace("\n", " ").replace("\r", " ") for s in strings if len(s) < 300]
    target = int(megabytes * 1e6)
    out, size = [], 0
    while size < target:
        if rng.random() < 0.15:
            line = rng.choice(strings)
        else:
            words = []
            for _ in range(rng.randint(8, 30)):
                r = rng.random()
                if r < 0.55:
                    w = rng.choices(lexicon, cum_weights=cum)[0]
                elif r < 0.9:
                    w = rng.choice(english)
                elif r < 0.95:
                    w = str(rng.randint(0, 10**rng.randint(1, 6)))
                else:
                    w = rng.choice([",", ".", ";", "(", ")", "-", "!", "?", "\"", "'s"])
                words.append(w.capitalize() if not words and rng.random() < 0.8 else w)
            line = " ".join(words) + rng.choice([".", ".", "!", "?", ""])
        out.append(line)
        size += len(line.encode("utf-8")) + 1
    path.write_text("\n".join(out), encoding="utf-8")


def train_large_model(text_path: Path, out: Path, vocab: int) -> None:
    data = text_path.read_text(encoding="utf-8").split("\n")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(data[: len(data) // 10]), model_prefix=str(out.with_suffix("")),
        model_type="unigram", vocab_size=vocab, normalization_rule_name="nmt_nfkc", character_coverage=0.9995,
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
        unk_piece="[UNK]", num_threads=os.cpu_count() or 1, minloglevel=2, hard_vocab_limit=False,
    )


def tokenizer_json_for(spm_path: Path, out: Path) -> None:
    from fixtures.tokenization import deberta_v3_fast_tokenizer  # the same converter call as the fixtures

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    deberta_v3_fast_tokenizer(spm_path, mask_id=sp.get_piece_size()).save(str(out))


def best_of(n: int, fn):
    """Best wall time, best process CPU time, and the result."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, result


def swift_bench(binary: Path, text: Path, tok: Path, repeat: int, threads: int) -> dict:
    r = subprocess.run([str(binary), str(text), str(tok), "--repeat", str(repeat), "--threads", str(threads)],
                       check=True, capture_output=True, text=True)
    return dict(kv.split("=", 1) for kv in r.stdout.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=10.0, help="size of the generated text in MB (default 10)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads for ours and sentencepiece's batch encode")
    ap.add_argument("--large-vocab", type=int, default=16000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "deberta-swift-tokenizer-bench")
    ap.add_argument("--no-build", action="store_true", help="use the existing .build-spm/release/tokenizer-bench")
    args = ap.parse_args()

    scratch = REPO / ".build-spm"
    binary = scratch / "release" / "tokenizer-bench"
    if not args.no_build:
        subprocess.run(["swift", "build", "-c", "release", "--scratch-path", str(scratch), "--product", "tokenizer-bench"],
                       cwd=REPO, check=True)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    text = work / f"text-{args.mb:g}mb.txt"
    if not text.exists():
        make_text(text, args.mb)
    large = work / f"large-{args.large_vocab}.model"
    if not large.exists():
        t0 = time.perf_counter()
        train_large_model(text, large, args.large_vocab)
        print(f"trained {large.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    models = [("fixture spm (300 pieces)", REPO / "Fixtures/tokenizers/spm/spm.model"),
              (f"trained spm ({args.large_vocab} pieces)", large)]

    raw = text.read_bytes()
    lines = raw.decode("utf-8").split("\n")
    mb = len(raw) / 1e6
    print(f"text: {text} ({mb:.2f} MB, {len(lines)} lines); one thread unless noted; best of {args.repeat}")
    print("MB/s = MB of UTF-8 input per second of wall time; CPU MB/s per second of process CPU time (the steadier")
    print("number on a shared machine); ids: our ids compared with the reference library's (FNV-1a over all ids)")
    print(f"{'model':28} {'implementation':46} {'MB/s':>7} {'CPU MB/s':>9} {'lines/s':>9} {'ids':>6}")

    def row(model, impl, seconds, cpu, ok=""):
        print(f"{model:28} {impl:46} {mb / seconds:7.2f} {mb / cpu:9.2f} {len(lines) / seconds:9.0f} {ok:>6}", flush=True)

    for name, model in models:
        tj = work / (model.stem + ".tokenizer.json")
        if model.parent == REPO / "Fixtures/tokenizers/spm":
            tj = REPO / "Fixtures/tokenizers/unigram-json/tokenizer.json"
        elif not tj.exists():
            tokenizer_json_for(model, tj)

        sp = spm.SentencePieceProcessor(model_file=str(model))
        t, c, ids = best_of(args.repeat, lambda: [sp.encode(line) for line in lines])
        spm_sum = fnv1a(ids)
        row(name, "sentencepiece: loop of encode(line)", t, c)
        t, c, ids_batch = best_of(args.repeat, lambda: sp.encode(lines, num_threads=args.threads))
        assert fnv1a(ids_batch) == spm_sum
        row(name, f"sentencepiece: encode(lines, num_threads={args.threads})", t, c)

        tok = Tokenizer.from_file(str(tj))
        t, c, encs = best_of(args.repeat, lambda: tok.encode_batch(lines, add_special_tokens=False))
        hf_sum = fnv1a(e.ids for e in encs)
        row(name, "tokenizers: encode_batch (RAYON_NUM_THREADS=1)", t, c)

        r = swift_bench(binary, text, model, args.repeat, 1)
        ok = "same" if int(r["checksum"], 16) == spm_sum else "DIFFER"
        row(name, "ours: spm.model (Swift)", float(r["seconds"]), float(r["cpu_seconds"]), ok)
        if args.threads > 1:
            r = swift_bench(binary, text, model, args.repeat, args.threads)
            row(name, f"ours: spm.model (Swift, {args.threads} threads)", float(r["seconds"]), float(r["cpu_seconds"]))
        try:
            r = swift_bench(binary, text, tj, args.repeat, 1)
            ok = "same" if int(r["checksum"], 16) == hf_sum else "DIFFER"
            row(name, "ours: tokenizer.json (Swift)", float(r["seconds"]), float(r["cpu_seconds"]), ok)
        except subprocess.CalledProcessError as e:
            print(f"{name:28} ours: tokenizer.json failed: {e.stderr.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
