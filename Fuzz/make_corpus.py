#!/usr/bin/env python3
"""Builds the committed seed corpus Fuzz/corpus/<target>/ from the fixtures (small, trimmed inputs).
Run from the repository root: python3 Fuzz/make_corpus.py"""
import glob, hashlib, json, os, shutil, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fuzz", "corpus")
F = os.path.join(ROOT, "Fixtures")

def fixtures(pattern):
    return sorted(glob.glob(os.path.join(F, pattern)))

def read(path):
    with open(path, "rb") as f:
        return f.read()

def put(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)

shutil.rmtree(OUT, ignore_errors=True)
small_zips = [p for p in fixtures("formats/*.bin") + fixtures("formats/*.pt") if os.path.getsize(p) < 64 << 10]
for p in fixtures("formats/*.safetensors") + fixtures("models/v2-qa-sharded/model-00003-of-00003.safetensors"):
    put("safetensors", read(p))
for p in small_zips:
    data = read(p)
    if data[:2] == b"PK":
        put("zip", data)
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                if name.endswith("data.pkl"):
                    put("pickle", b"\x00" + z.read(name))
    else:
        put("legacy", data)
        put("pickle", b"\x01" + data[15:])  # the legacy stream after its magic-number pickle
for p in fixtures("models/*/*.index.json"):
    put("shard-index", read(p))
for p in fixtures("models/*/config.json"):
    put("config", read(p))
for p in fixtures("models/*/*.json") + fixtures("tokenizers/bpe/vocab.json"):
    if os.path.getsize(p) < 16 << 10 and "expected" not in p:
        put("json", read(p))
for p in fixtures("tokenizers/*/spm.model"):
    put("spm", read(p))
for p in fixtures("tokenizers/*/tokenizer.json"):
    t = json.loads(read(p))
    model = t.get("model", {})
    if isinstance(model.get("vocab"), list) and len(model["vocab"]) > 1000:  # unigram: keep 1000 pieces
        model["vocab"] = model["vocab"][:1000]
        if isinstance(model.get("unk_id"), int) and model["unk_id"] >= 1000:
            model["unk_id"] = 0
        t["added_tokens"] = [a for a in t.get("added_tokens", []) if a.get("id", 0) < 1000]
    if not (isinstance(t.get("normalizer"), dict) and "Precompiled" in json.dumps(t["normalizer"])):
        put("tokenizer-json", json.dumps(t, ensure_ascii=False).encode())
    else:
        # Without the 300 KB charsmap (a 330 KB seed runs at ~10 executions/s; the spm target covers
        # precompiled charsmaps): plain and regex Replace normalizers instead.
        for pattern in ({"String": "  "}, {"Regex": "\\s+"}):
            t["normalizer"] = {"type": "Sequence", "normalizers": [
                {"type": "Strip", "strip_left": True, "strip_right": True},
                {"type": "Replace", "pattern": pattern, "content": " "}]}
            put("tokenizer-json", json.dumps(t, ensure_ascii=False).encode())
for d in fixtures("tokenizers/bpe") + fixtures("models/v1-mlm"):
    put("vocab-merges", read(os.path.join(d, "vocab.json")) + b"\x00" + read(os.path.join(d, "merges.txt")))
