#!/usr/bin/env python3
"""Benchmark `deberta serve` under load: batching, the user-written peer, and scale-out behind nginx.

Usage (from the repository root; the reference venv has torch, onnxruntime, FastAPI and uvicorn):

    swift build -c release --product deberta
    $(Tools/reference_env.sh) Tools/bench_serve.py                    # everything, medians of 3
    $(Tools/reference_env.sh) Tools/bench_serve.py --quick            # 1 repeat, fewer requests
    $(Tools/reference_env.sh) Tools/bench_serve.py --only scaleout --precisions int8

What it does, all on 127.0.0.1:

1. Prepares (once, cached in DIR = ~/.cache/deberta-swift/bench/v3-base-seqcls) a DeBERTa-v3-base-shaped
   sequence-classification model (DebertaV2ForSequenceClassification, 12 layers, hidden 768, FFN 3072,
   vocab 128100, 3 NLI labels), random-initialized as Tools/make_bench_model.py does, with the tokenizer of
   Fixtures/models/v3-mlm-trained; our int8 store (`deberta convert --dtype int8`); ONNX f32 and ONNX
   Runtime's quantize_dynamic int8 for the peer.
2. Texts with realistic sentence lengths: token counts drawn from a log-normal distribution (median 32,
   clipped to 8..160 tokens with [CLS]/[SEP]), built from English words with a fixed seed.
3. `batching`: per precision, our server (--threads 2) and the peer, the server users write themselves
   (FastAPI + uvicorn around an ONNX Runtime session, intra-op threads 2, one worker, a sync handler that
   tokenizes with transformers' fast tokenizer and runs the request alone), each driven with a fixed
   number of POST /predict requests at concurrency 1, 8, 32 and 128 by an asyncio HTTP/1.1 keep-alive
   client, alternating ours and the peer's runs.
4. `scaleout`: one replica with --threads 1, then two replicas with --threads 1 behind nginx (Debian's
   package, round-robin upstream with keep-alive), at concurrency 32.

Prints requests/s, tokens/s, p50/p90/p99 latency and failed requests for every run, the medians over the
repeats, and the ratios the issue names (ours at 32 / ours at 1, ours / peer throughput at 32, p99 ours /
peer at 32, 2 replicas / 1 replica). `--json-out` keeps every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("HOME", "~")).expanduser()
DEFAULT_DIR = HOME / ".cache" / "deberta-swift" / "bench" / "v3-base-seqcls"
TOKENIZER_FIXTURE = REPO / "Fixtures" / "models" / "v3-mlm-trained"
TOKENIZER_FILES = ("spm.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
CONCURRENCY = (1, 8, 32, 128)
WORDS = (
    "the a of and to in is was for on that with as by at from this be are it an or which were not have "
    "has had but their its they one all also been more first two new other after some time there who most "
    "year years people city world state school river music film team game season group family village "
    "house church war book company series album station line road town government university party "
    "national history population water land north south west east century area system life work place "
    "small large early later known called found built played released became began made used based "
    "between during under through against because while where when about before since until around "
    "several many each both such only same long old young high great important public local general "
    "quickly slowly carefully often never always sometimes together already almost nearly especially"
).split()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# preparation: the model, our int8 store, the peer's ONNX files, the texts


def prepare(directory: Path, deberta: str) -> None:
    f32, int8, onnx = directory / "f32", directory / "int8", directory / "onnx"
    if not (f32 / "model.safetensors").exists():
        import torch
        from transformers import DebertaV2ForSequenceClassification

        sys.path.insert(0, str(REPO / "Tools"))
        from make_bench_model import bench_config, init_weights

        config = bench_config()
        config.num_labels = len(LABELS)
        config.id2label = dict(LABELS)
        config.label2id = {v: k for k, v in LABELS.items()}
        model = DebertaV2ForSequenceClassification(config).eval()
        init_weights(model, seed=0)
        tmp = directory / "f32.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, max_shard_size="100GB")
        for name in TOKENIZER_FILES:
            shutil.copy(TOKENIZER_FIXTURE / name, tmp / name)
        tmp.rename(f32)
        log(f"wrote {f32}")
        del model
    if not (int8 / "model.safetensors").exists():
        subprocess.run([deberta, "convert", str(f32), str(int8), "--dtype", "int8"], check=True, stdout=subprocess.DEVNULL)
        log(f"wrote {int8}")
    if not (onnx / "model.int8.onnx").exists():
        export_onnx(f32, onnx)


def export_onnx(model_dir: Path, out: Path) -> None:
    """The peer's model: torch.onnx (TorchScript exporter, opset 18, dynamic batch and sequence) checked
    against torch, and quantize_dynamic(QInt8) for int8, as a user deploying with ONNX Runtime does."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import DebertaV2ForSequenceClassification

    model = DebertaV2ForSequenceClassification.from_pretrained(str(model_dir)).eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

    wrapped = Logits(model).eval()
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 300, (2, 48), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    f32 = out / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (ids, mask), str(f32), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch"}},
                          opset_version=18, dynamo=False)
    session = ort.InferenceSession(str(f32), providers=["CPUExecutionProvider"])
    x = torch.randint(4, 300, (3, 77), generator=g)
    m = torch.ones_like(x)
    m[2, 40:] = 0
    with torch.no_grad():
        want = wrapped(x, m).numpy()
    got = session.run(None, {"input_ids": x.numpy(), "attention_mask": m.numpy()})[0]
    err = float(np.abs(got - want).max())
    log(f"onnx f32 vs torch: max abs diff {err:.2e}")
    if err > 1e-3:
        sys.exit(f"bench_serve.py: the ONNX export of {model_dir} differs from torch by {err}")
    quantize_dynamic(str(f32), str(out / "model.int8.onnx.tmp"), weight_type=QuantType.QInt8)
    os.replace(out / "model.int8.onnx.tmp", out / "model.int8.onnx")
    log(f"wrote {out}")


def make_texts(tokenizer_dir: Path, count: int, seed: int = 0) -> list[tuple[str, int]]:
    """`count` (text, tokens) with token counts (special tokens included) log-normal around 32."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        target = int(min(160, max(8, round(rng.lognormvariate(math.log(32), 0.5)))))
        words: list[str] = []
        n = 2
        while n < target:
            words.append(rng.choice(WORDS))
            n = len(tok(" ".join(words))["input_ids"])
        text = " ".join(words)
        text = text[0].upper() + text[1:] + "."
        texts.append((text, len(tok(text)["input_ids"])))
    return texts


# ---------------------------------------------------------------------------------------------------
# the peer: the FastAPI + uvicorn + ONNX Runtime server users write themselves


def peer_server(onnx_path: str, tokenizer_dir: str, port: int, threads: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    labels = [LABELS[i] for i in range(len(LABELS))]
    app = FastAPI()

    class PredictRequest(BaseModel):
        inputs: str | list[str]
        raw_scores: bool = False
        truncate: bool = False

    @app.get("/health")
    def health():
        return {}

    def predict(request):
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        enc = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="np")
        logits = session.run(["logits"], {"input_ids": enc["input_ids"].astype(np.int64),
                                          "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        out = [sorted(({"label": labels[j], "score": float(row[j])} for j in range(len(labels))), key=lambda d: -d["score"]) for row in p]
        return out[0] if isinstance(request.inputs, str) else out

    # (this module uses postponed annotations, which FastAPI cannot resolve for a class local to a function)
    predict.__annotations__ = {"request": PredictRequest}
    app.post("/predict")(predict)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------------------------------------
# processes: our server, the peer, nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench_serve.py: {process.args} exited with {process.returncode} before answering /health")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"bench_serve.py: {url}/health did not answer 200 within {seconds} s")


class Server:
    def __init__(self, name: str, args: list[str], url: str | None = None, env: dict | None = None):
        self.name = name
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        if url is None:  # ours: the first line names the bound address
            line = self.process.stdout.readline()
            if "listening on " not in line:
                sys.exit(f"bench_serve.py: {args[0]} serve printed {line!r}")
            url = line.rsplit(" ", 1)[1].strip()
        self.url = url
        wait_healthy(url, self.process)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def ours(deberta: str, model: Path, threads: int, name: str) -> Server:
    return Server(name, [deberta, "serve", str(model), "--port", "0", "--threads", str(threads)])


def peer(onnx: Path, tokenizer: Path, threads: int, name: str) -> Server:
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return Server(name, [sys.executable, __file__, "--peer-server", str(onnx), "--tokenizer", str(tokenizer), "--port", str(port),
                         "--threads", str(threads)], url=f"http://127.0.0.1:{port}", env=env)


class Nginx:
    """nginx as a round-robin load balancer over `upstreams` (keep-alive to the replicas)."""

    def __init__(self, upstreams: list[str]):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            sys.exit("bench_serve.py: nginx is missing (apt-get install nginx)")
        self.dir = Path(tempfile.mkdtemp(prefix="bench-serve-nginx-"))
        port = free_port()
        servers = "\n".join(f"        server {u.removeprefix('http://')};" for u in upstreams)
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    upstream replicas {{
{servers}
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 600s;
        }}
    }}
}}
""")
        self.process = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{port}"
        wait_healthy(self.url, self.process, 30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# the load: a fixed number of requests at a fixed concurrency, HTTP/1.1 keep-alive


async def _one(reader, writer, host: str, body: bytes) -> int:
    writer.write(b"POST /predict HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


async def _drive(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    host_port = url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    queue = list(enumerate(bodies))
    latencies: list[float] = []
    failures = 0

    async def worker():
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                _, body = queue.pop()
                t0 = time.perf_counter()
                try:
                    status = await _one(reader, writer, host_port, body)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    failures += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, failures


def load(url: str, texts: list[tuple[str, int]], requests: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    chosen = [rng.choice(texts) for _ in range(requests)]
    bodies = [json.dumps({"inputs": t}).encode() for t, _ in chosen]
    warm = [json.dumps({"inputs": t}).encode() for t, _ in chosen[: min(len(chosen), 2 * concurrency)]]
    asyncio.run(_drive(url, warm, concurrency))
    wall, latencies, failures = asyncio.run(_drive(url, bodies, concurrency))
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(math.ceil(q * len(latencies))) - 1)] * 1000

    return {"requests": requests, "concurrency": concurrency, "seconds": wall, "rps": requests / wall,
            "tokens_per_s": sum(n for _, n in chosen) / wall, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "failed": failures}


# ---------------------------------------------------------------------------------------------------


def requests_for(concurrency: int, quick: bool) -> int:
    base = {1: 64, 8: 256, 32: 512, 128: 1024}.get(concurrency, 8 * concurrency)
    return base // 2 if quick else base


def summarize(samples: list[dict]) -> dict:
    keys = ("rps", "tokens_per_s", "p50_ms", "p90_ms", "p99_ms")
    out = {k: statistics.median(s[k] for s in samples) for k in keys}
    out["failed"] = sum(s["failed"] for s in samples)
    out["repeats"] = len(samples)
    return out


def row(name: str, c: int, s: dict) -> str:
    return (f"| {name} | {c} | {s['rps']:.1f} | {s['tokens_per_s']:.0f} | {s['p50_ms']:.0f} | {s['p90_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {s['failed']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"bench model directory (default {DEFAULT_DIR})")
    ap.add_argument("--deberta", default=str(REPO / ".build" / "release" / "deberta"), help="the deberta binary (release build)")
    ap.add_argument("--precisions", default="int8,f32")
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the medians are reported")
    ap.add_argument("--only", choices=("batching", "scaleout"), help="one part of the benchmark")
    ap.add_argument("--quick", action="store_true", help="half the requests, 1 repeat")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--peer-server", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peer_server:
        peer_server(a.peer_server, a.tokenizer, a.port, a.threads)
        return 0
    if not os.access(a.deberta, os.X_OK):
        sys.exit(f"bench_serve.py: {a.deberta} is missing; run `swift build -c release --product deberta` first")
    repeats = 1 if a.quick else a.repeats
    levels = [int(c) for c in a.concurrency.split(",")]
    prepare(a.dir, a.deberta)
    texts = make_texts(a.dir / "f32", 400)
    lengths = sorted(n for _, n in texts)
    log(f"texts: {len(texts)}, tokens median {statistics.median(lengths)}, p10 {lengths[len(lengths) // 10]}, "
        f"p90 {lengths[9 * len(lengths) // 10]}, max {lengths[-1]}")
    results: dict = {"machine": machine(), "texts": {"count": len(texts), "median_tokens": statistics.median(lengths)}, "runs": []}
    table: list[str] = []
    ratios: list[str] = []
    for precision in a.precisions.split(","):
        model = a.dir / precision
        onnx = a.dir / "onnx" / ("model.onnx" if precision == "f32" else "model.int8.onnx")
        if a.only in (None, "batching"):
            servers = [ours(a.deberta, model, 2, f"deberta serve {precision}"), peer(onnx, a.dir / "f32", 2, f"FastAPI + ORT {precision}")]
            try:
                samples: dict = {}
                for r in range(repeats):
                    for c in levels:
                        for s in servers:
                            res = load(s.url, texts, requests_for(c, a.quick), c, seed=100 * r + c)
                            log(f"  {s.name} c={c} run {r + 1}: {res['rps']:.1f} req/s, p99 {res['p99_ms']:.0f} ms, failed {res['failed']}")
                            samples.setdefault((s.name, c), []).append(res)
                            results["runs"].append({"server": s.name, **res})
            finally:
                for s in servers:
                    s.stop()
            med = {k: summarize(v) for k, v in samples.items()}
            for (name, c), s in med.items():
                table.append(row(name, c, s))
            mine, theirs = servers[0].name, servers[1].name
            if (mine, 1) in med and (mine, 32) in med:
                ratios.append(f"{precision}: ours c=32 / c=1 throughput {med[(mine, 32)]['rps'] / med[(mine, 1)]['rps']:.2f} (target >= 3)")
            if (mine, 32) in med and (theirs, 32) in med:
                ratios.append(f"{precision}: ours / peer throughput at c=32 {med[(mine, 32)]['rps'] / med[(theirs, 32)]['rps']:.2f} (target >= 2)")
                ratios.append(f"{precision}: ours / peer p99 at c=32 {med[(mine, 32)]['p99_ms'] / med[(theirs, 32)]['p99_ms']:.2f} (target <= 0.5)")
        if a.only in (None, "scaleout"):
            samples = {}
            for r in range(repeats):
                one = ours(a.deberta, model, 1, f"1 replica {precision} (1 thread)")
                try:
                    res = load(one.url, texts, requests_for(32, a.quick), 32, seed=7 + r)
                finally:
                    one.stop()
                log(f"  {one.name} run {r + 1}: {res['rps']:.1f} req/s, failed {res['failed']}")
                samples.setdefault(one.name, []).append(res)
                results["runs"].append({"server": one.name, **res})
                replicas = [ours(a.deberta, model, 1, f"replica {i}") for i in range(2)]
                balancer = Nginx([s.url for s in replicas])
                name = f"2 replicas {precision} behind nginx (1 thread each)"
                try:
                    res = load(balancer.url, texts, requests_for(32, a.quick), 32, seed=7 + r)
                finally:
                    balancer.stop()
                    for s in replicas:
                        s.stop()
                log(f"  {name} run {r + 1}: {res['rps']:.1f} req/s, failed {res['failed']}")
                samples.setdefault(name, []).append(res)
                results["runs"].append({"server": name, **res})
            med = {k: summarize(v) for k, v in samples.items()}
            for name, s in med.items():
                table.append(row(name, 32, s))
            names = list(med)
            ratios.append(f"{precision}: 2 replicas / 1 replica throughput at c=32 {med[names[1]]['rps'] / med[names[0]]['rps']:.2f} (target >= 1.6)")
    failed = sum(r["failed"] for r in results["runs"])
    print(f"machine: {results['machine']}; texts: median {results['texts']['median_tokens']} tokens; medians of {repeats}")
    print("| server | concurrency | requests/s | tokens/s | p50 ms | p90 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print("\n".join(ratios))
    print(f"failed requests in all runs: {failed}")
    results["ratios"] = ratios
    if a.json_out:
        a.json_out.write_text(json.dumps(results, indent=2))
    return 0 if failed == 0 else 1


def machine() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        fields = {}
        for line in info.splitlines():
            k, _, v = line.partition(":")
            fields.setdefault(k.strip(), v.strip())
        flags = fields.get("flags", "").split()
        isa = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
        return f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {isa}, {os.cpu_count()} cores"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
