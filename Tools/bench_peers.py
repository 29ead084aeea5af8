#!/usr/bin/env python3
"""Side-by-side benchmark of this runtime against PyTorch and ONNX Runtime on a DeBERTa-v3-base shape.

Usage (the peers need the pinned reference environment, a venv OUTSIDE the repository made by
Tools/reference_env.sh: ${DEBERTA_REFERENCE_VENV:-$HOME/.cache/deberta-swift/venv-reference}, with torch 2.15.0,
transformers 5.24.0, onnxruntime 1.32.0 as pinned in Tools/requirements-reference.txt):

    swift build -c release --product deberta
    $(Tools/reference_env.sh) Tools/bench_peers.py                       # all shapes, 10 runs
    $(Tools/reference_env.sh) Tools/bench_peers.py --quick --markdown    # 3 runs, README-ready table too
    $(Tools/reference_env.sh) Tools/bench_peers.py --shapes 1x128,8x128 --runs 20 --json-out results.json

What is compared (one invocation, 2 threads each, the same random DeBERTa-v3-base-shaped weights):

    pytorch-f32   transformers DebertaV2Model.from_pretrained(DIR/safetensors), torch.set_num_threads(2),
                  torch.inference_mode(), eager f32
    ort-f32       onnxruntime InferenceSession(DIR/onnx/encoder.onnx), CPU provider, intra_op 2,
                  inter_op 1, ORT_SEQUENTIAL, default graph optimizations
    ort-int8      the same on DIR/onnx/encoder.int8.onnx (quantize_dynamic, QInt8 weights)
    ov-f32        OpenVINO (openvino 2026.4.1) on DIR/onnx/encoder.onnx, CPU plugin, compiled per shape (static
                  [B, T] inputs), INFERENCE_NUM_THREADS 2, PERFORMANCE_HINT LATENCY, INFERENCE_PRECISION_HINT f32
    ov-bf16       the same with INFERENCE_PRECISION_HINT bf16
    ov-int8       the same on DIR/onnx/encoder.ov-int8.xml: nncf.quantize(model_type=ModelType.TRANSFORMER) of
                  encoder.onnx calibrated on 32 random 128-token sequences (made once, cached beside the ONNX
                  files); precision hint left at the plugin's default (bf16 where the CPU has AVX-512 BF16)
    deberta-f32   `deberta bench DIR/safetensors --encoder-only`
    deberta-bf16  `deberta bench DIR/safetensors --encoder-only --precision bf16`
    deberta-int8  `deberta bench DIR/int8 --encoder-only`  (deberta convert DIR/safetensors DIR/int8 --dtype int8)
    deberta-int8-bf16a  the same with --attention-precision bf16 (attention products in bf16, as OpenVINO's int8
                  runs the layers NNCF leaves in float; no longer the exact PyTorch simulation of int8)
    deberta-q4    `deberta bench DIR/q4 --encoder-only`    (deberta convert ... DIR/q4 --dtype q4 --quantize-embeddings)

The timed computation is the same for every runtime: the ENCODER alone, input_ids [B, T] (token 1 then
random ids in [4, vocab)) with an all-ones attention mask -> last_hidden_state [B, T, 768] (embeddings +
LayerNorm + 12 layers of disentangled attention; no MLM head over the 128,100-token vocabulary, no EMD).
The ONNX files are encoder-only exports (Tools/make_bench_model.py --encoder-onnx writes them from
DIR/safetensors when missing; the older onnx/model*.onnx hold the masked-LM head and are not used here).

How it is measured:
  * Latency: rounds alternate between the runtimes (round r starts at runtime r mod n, so that no runtime
    always follows the same one and machine noise hits all alike). In every round each runtime makes
    --per-round calls (default 1). PyTorch and ONNX Runtime run in one long-lived worker process each
    (started with this interpreter), timed in-process with time.perf_counter() around each call after
    --warmup calls per shape. This runtime runs one fresh `deberta bench MODEL --batch B --seq T --runs K
    --encoder-only --json` per round (it loads, makes one warm-up call, then times K calls itself with a
    monotonic clock) and its median_ms is that round's sample. Reported: median over rounds of each round's
    median (with --per-round 1, simply the median of all calls), min and max.
  * Peak RSS and start-to-first-output: a FRESH process per runtime and shape (--cold-rounds of them, median)
    that does what `deberta bench --runs 1` does: load, one call (the first output), one more call, exit
    (this runtime also packs its f32 weights after the first output, as a model does when its second call
    starts, and makes one more warm-up call: its peak RSS includes the packed copy).
    Start-to-first-output is wall clock in this parent from just before spawning to the first output: the
    Python children and `deberta bench --mark-first-output` print a line "first-output" the moment the first call returns
    (so Python start-up and the imports of torch/transformers/onnxruntime are included). Peak RSS is ru_maxrss of that child from
    os.wait4() (whole process: interpreter and libraries included, mapped weight pages that were touched
    included). Files are in the page cache (all were read by the timing rounds first).
  * GFLOP/s: every runtime is credited with the SAME operation count per call, the one `deberta bench`
    reports for this runtime's encoder at that shape (gflops x median); it counts this runtime's operations
    (linear layers, attention, the position projections once per call), not what PyTorch or ONNX Runtime
    actually execute.
  * FMA peak: a tiny C program (cc -O2 -mavx2 -mfma, and -mavx512f when the CPU lists avx512f; built in a
    temp dir) runs independent 8-wide (16-wide) FMAs on 12 accumulators per thread for --fma-seconds on 1 and
    on 2 threads, once per round, between the runtimes; "% FMA peak" is GFLOP/s over the median 2-thread peak
    of the widest FMAs the CPU has, measured during the same shape's rounds.

Accuracy beside speed (when ov-int8 runs; --no-accuracy skips it): masked top-1 agreement with f32 on the trained
fixture Fixtures/models/v3-mlm-trained (held-out text), for OpenVINO f32/bf16/int8 (the same configuration and NNCF
recipe on the fixture's ONNX export, cached in DIR/../v3-mlm-trained), ONNX Runtime int8 and this runtime's f32,
bf16 and int8.

Against OpenVINO (issue 12, at 1x128, 8x128 and 1x512): deberta-f32 <= 0.75 x ov-f32, deberta-bf16 <= 0.8 x ov-bf16
and >= 1.7x faster than deberta-f32, deberta-int8 <= 0.7 x ov-int8; deberta int8 agreement >= OpenVINO int8's.

Acceptance ratios of the project (PASS/FAIL, at 1x128 and 8x128 when measured): deberta-f32 median <= 0.8 x
ort-f32; deberta-int8 <= 0.6 x ort-int8; deberta-int8 at least 1.6x faster than deberta-f32 (guide);
peak RSS <= 0.4 x ONNX Runtime's at the same precision; start-to-first-output <= 0.25 x ONNX Runtime's
load + first run (same precision); deberta-f32 throughput at 8x128 >= 65% of the 2-thread FMA peak.

The machine is shared: read ratios measured side by side in one run, never a lone absolute time; the load
average before and after is printed with the results. Caveats seen on the 2-CPU development VM:
  * When the machine is oversubscribed (load average above the CPU count), PyTorch's 2-thread OpenMP
    barriers collapse (1 x 128 took 4-9 s with 2 threads against ~1.2 s with 1 thread in the same minute);
    ONNX Runtime and this runtime suffer far less. Its rows are then not representative.
  * The CPU may have AVX-512 / VNNI (e.g. a Zen 5 host): ONNX Runtime (MLAS), PyTorch (oneDNN/MKL) and this
    runtime's kernels (CGemm, CQuantKernels) then use them, and the FMA-peak target is taken against the
    AVX-512 peak (twice the AVX2 one on a core with full-width 512-bit FMA units); both are printed.
  * Start-to-first-output includes one forward pass at the shape, which dominates at 8 x 128 and 1 x 512.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "deberta-swift" / "bench" / "v3-base"
DEFAULT_SHAPES = "1x32,1x128,8x128,1x512"
THREADS = 2

PEERS = ("pytorch-f32", "ort-f32", "ort-int8", "ov-f32", "ov-bf16", "ov-int8")
OURS = ("deberta-f32", "deberta-bf16", "deberta-int8", "deberta-int8-bf16a", "deberta-q4")
ALL = PEERS + OURS
LABEL = {
    "pytorch-f32": "PyTorch eager f32",
    "ort-f32": "ONNX Runtime f32",
    "ort-int8": "ONNX Runtime int8 (dynamic QInt8)",
    "ov-f32": "OpenVINO f32",
    "ov-bf16": "OpenVINO bf16",
    "ov-int8": "OpenVINO int8 (NNCF static)",
    "deberta-f32": "deberta f32",
    "deberta-bf16": "deberta bf16",
    "deberta-int8": "deberta int8",
    "deberta-int8-bf16a": "deberta int8, bf16 attention",
    "deberta-q4": "deberta q4 (+q4 embeddings)",
}
OUR_DIR = {"deberta-f32": "safetensors", "deberta-bf16": "safetensors", "deberta-int8": "int8", "deberta-int8-bf16a": "int8",
           "deberta-q4": "q4"}
OUR_FLAGS = {"deberta-bf16": ["--precision", "bf16"], "deberta-int8-bf16a": ["--attention-precision", "bf16"]}
CONVERT = {"deberta-int8": ["--dtype", "int8"], "deberta-q4": ["--dtype", "q4", "--quantize-embeddings"]}
ONNX_FILE = {"ort-f32": "encoder.onnx", "ort-int8": "encoder.int8.onnx"}
# OpenVINO reads the f32 ONNX export; its int8 model is NNCF's post-training static quantization of it, cached as IR
# beside the ONNX files. INFERENCE_PRECISION_HINT: f32 and bf16 forced; int8 keeps the CPU plugin's default (bf16 on
# CPUs with AVX-512 BF16 or AMX) for the layers NNCF leaves in float: what a user of OpenVINO int8 gets.
OV_FILE = {"ov-f32": "encoder.onnx", "ov-bf16": "encoder.onnx", "ov-int8": "encoder.ov-int8.xml"}
OV_PRECISION = {"ov-f32": "f32", "ov-bf16": "bf16", "ov-int8": None}
OV_CALIBRATION = 32  # random sequences of 128 tokens
TRAINED_FIXTURE = REPO / "Fixtures" / "models" / "v3-mlm-trained"

FMA_C = r"""
/* Independent FMAs: 12 accumulator chains per thread, 8-wide AVX2 (or 16-wide with -DWIDE512). */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef WIDE512
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define ADD _mm512_add_ps
static float first(vec v) { float o[16]; _mm512_storeu_ps(o, v); return o[0]; }
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float first(vec v) { float o[8]; _mm256_storeu_ps(o, v); return o[0]; }
#endif

static double seconds;
static double rate[64];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define STEP(a) a = FMADD(a, b, c)
static void *work(void *arg) {
    int id = (int)(long)arg;
    vec b = SET1(0.9999999f), c = SET1(1e-7f);  /* converges to 1: no overflow, no denormals */
    vec a0 = SET1(0.1f), a1 = SET1(0.2f), a2 = SET1(0.3f), a3 = SET1(0.4f), a4 = SET1(0.5f), a5 = SET1(0.6f),
        a6 = SET1(0.7f), a7 = SET1(0.8f), a8 = SET1(0.9f), a9 = SET1(1.1f), a10 = SET1(1.2f), a11 = SET1(1.3f);
    long n = 0;
    double t0 = now(), t;
    do {
        for (int r = 0; r < 1000; r++) {
            STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
            STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
        }
        n += 1000;
        t = now() - t0;
    } while (t < seconds);
    vec s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));
    if (first(s) == 12345.0f) printf("#");  /* keeps the chains alive */
    rate[id] = (double)n * 12 * LANES * 2 / t / 1e9;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    seconds = argc > 2 ? atof(argv[2]) : 0.5;
    if (threads < 1 || threads > 64) return 2;
    pthread_t th[64];
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, work, (void *)(long)i);
    double total = 0;
    for (int i = 0; i < threads; i++) { pthread_join(th[i], NULL); total += rate[i]; }
    printf("%.2f\n", total);
    return 0;
}
"""


# ----------------------------------------------------------------------------------------------------------
# Peer runtimes (imported lazily: only the worker and cold children load torch / onnxruntime)


def make_inputs(batch: int, seq: int, vocab: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed + 1000 * batch + seq)
    ids = rng.integers(4, vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0] = 1
    return ids, np.ones_like(ids)


def ov_config(name: str) -> dict:
    config = {"INFERENCE_NUM_THREADS": str(THREADS), "PERFORMANCE_HINT": "LATENCY"}
    if OV_PRECISION.get(name):
        config["INFERENCE_PRECISION_HINT"] = OV_PRECISION[name]
    return config


def ov_compile(core, path: Path, batch: int, seq: int, config: dict):
    """An infer request of `path` compiled for inputs [batch, seq] (every input of the model gets that shape)."""
    model = core.read_model(str(path))
    model.reshape({inp.get_any_name(): [batch, seq] for inp in model.inputs})
    return core.compile_model(model, "CPU", config).create_infer_request()


def ov_quantize(onnx_path: Path, xml_path: Path, vocab: int, seq: int) -> None:
    """NNCF post-training static int8 (ModelType.TRANSFORMER preset: SmoothQuant, int8 activations and weights)
    calibrated on OV_CALIBRATION random sequences of `seq` tokens; the IR written to xml_path (atomically)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    names = [inp.get_any_name() for inp in model.inputs]
    samples = [make_inputs(1, seq, vocab, seed=7000 + i) for i in range(OV_CALIBRATION)]
    dataset = nncf.Dataset(samples, lambda s: {n: v for n, v in zip(names, s)})
    t0 = time.time()
    quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=OV_CALIBRATION)
    tmp = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml_path.with_suffix(".bin"))
    tmp.replace(xml_path)
    log(f"  {xml_path.name}: nncf.quantize (transformer preset, {OV_CALIBRATION} random sequences) {time.time() - t0:.0f}s")


class PeerRuntime:
    """Loads one peer runtime and runs the encoder on (input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, name: str, model_dir: Path):
        self.name = name
        self.vocab = json.loads((model_dir / "safetensors" / "config.json").read_text())["vocab_size"]
        if name == "pytorch-f32":
            import torch
            import transformers
            from transformers import DebertaV2Model

            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            torch.set_num_threads(THREADS)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
            self.torch = torch
            self.model = DebertaV2Model.from_pretrained(str(model_dir / "safetensors"), dtype=torch.float32).eval()
            self.versions = {"torch": torch.__version__, "transformers": transformers.__version__}
        elif name in OV_FILE:
            import openvino as ov

            self.ov = ov
            self.core = ov.Core()
            self.ov_path = model_dir / "onnx" / OV_FILE[name]
            self.ov_config = ov_config(name)
            self.compiled = {}
            self.versions = {"openvino": ov.get_version().split("-")[0]}
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = THREADS
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            path = model_dir / "onnx" / ONNX_FILE[name]
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            outputs = [o.name for o in self.session.get_outputs()]
            if outputs != ["last_hidden_state"]:
                raise SystemExit(f"{path}: outputs {outputs}, expected the encoder's last_hidden_state alone")
            self.versions = {"onnxruntime": ort.__version__}
        self.inputs = {}

    def prepare(self, batch: int, seq: int):
        if (batch, seq) not in self.inputs:
            ids, mask = make_inputs(batch, seq, self.vocab)
            if self.name == "pytorch-f32":
                self.inputs[(batch, seq)] = (self.torch.from_numpy(ids), self.torch.from_numpy(mask))
            elif self.name in OV_FILE:
                # Compiled per shape (static shapes), as OpenVINO is deployed for latency.
                self.compiled[(batch, seq)] = ov_compile(self.core, self.ov_path, batch, seq, self.ov_config)
                self.inputs[(batch, seq)] = {"input_ids": ids, "attention_mask": mask}
            else:
                self.inputs[(batch, seq)] = {"input_ids": ids, "attention_mask": mask}
        return self.inputs[(batch, seq)]

    def call(self, batch: int, seq: int):
        x = self.prepare(batch, seq)
        if self.name == "pytorch-f32":
            with self.torch.inference_mode():
                out = self.model(input_ids=x[0], attention_mask=x[1]).last_hidden_state
        elif self.name in OV_FILE:
            request = self.compiled[(batch, seq)]
            request.infer(x)
            out = request.get_output_tensor(0).data
        else:
            out = self.session.run(["last_hidden_state"], x)[0]
        assert tuple(out.shape[:2]) == (batch, seq), out.shape
        return out


def peak_rss_self_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def worker_main(name: str, model_dir: Path) -> int:
    """Long-lived timing worker: one JSON request per stdin line, one JSON answer per stdout line."""
    t0 = time.perf_counter()
    rt = PeerRuntime(name, model_dir)
    print(json.dumps({"ready": True, "load_s": time.perf_counter() - t0, "versions": rt.versions}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        b, t = req["batch"], req["seq"]
        if req["op"] == "warmup":
            for _ in range(req["calls"]):
                rt.call(b, t)
            print(json.dumps({"ok": True}), flush=True)
        elif req["op"] == "run":
            times = []
            for _ in range(req["calls"]):
                s = time.perf_counter()
                rt.call(b, t)
                times.append((time.perf_counter() - s) * 1000)
            print(json.dumps({"times_ms": times}), flush=True)
        elif req["op"] == "quit":
            break
    return 0


def cold_main(name: str, model_dir: Path, batch: int, seq: int) -> int:
    """Fresh process: load, first output (announced at once on stdout), one more timed call, report, exit."""
    t0 = time.perf_counter()
    rt = PeerRuntime(name, model_dir)
    load = time.perf_counter() - t0
    rt.call(batch, seq)
    print("first-output", flush=True)
    first = time.perf_counter() - t0
    s = time.perf_counter()
    rt.call(batch, seq)
    second = (time.perf_counter() - s) * 1000
    print(json.dumps({"load_s": load, "first_output_s": first, "second_ms": second,
                      "vmhwm_mb": peak_rss_self_mb()}), flush=True)
    return 0


def fixture_accuracy_main(deberta: str, cache: Path) -> int:
    """Masked top-1 agreement with f32 on the trained fixture (Fixtures/models/v3-mlm-trained, 256 held-out
    sequences of 64 tokens, 2,323 masked positions; f32 = the float64 transformers model's top-1 recorded in
    heldout.safetensors), plain MLM head (`logits`; OpenVINO has no EMD). Peers: the fixture's masked LM exported
    to ONNX as Tools/make_bench_model.py exports the bench model, OpenVINO f32 / bf16 on it and OpenVINO int8 from
    the same NNCF recipe as the bench model (OV_CALIBRATION random sequences, here of 64 tokens), each with the
    bench's OpenVINO configuration; ONNX Runtime's dynamic int8 of the same export. Ours: `deberta run` of the
    fixture (f32, --precision bf16) and of its int8 conversion. One JSON line on stdout."""
    import numpy as np
    import openvino as ov
    from safetensors.numpy import load_file

    sys.path.insert(0, str(REPO / "Tools"))
    heldout_path = TRAINED_FIXTURE / "heldout.safetensors"
    heldout = load_file(str(heldout_path))
    ids, mask = heldout["input_ids"], heldout["attention_mask"]
    masked = heldout["masked_positions"].reshape(-1) != 0
    expected = heldout["f32_top1_logits"]
    vocab = json.loads((TRAINED_FIXTURE / "config.json").read_text())["vocab_size"]
    onnx_dir = cache / "onnx"
    f32_onnx = onnx_dir / "model.onnx"
    if not (f32_onnx.exists() and (onnx_dir / "model.int8.onnx").exists()):
        import torch
        from transformers import DebertaV2ForMaskedLM
        import make_bench_model

        mlm = DebertaV2ForMaskedLM.from_pretrained(str(TRAINED_FIXTURE), dtype=torch.float32).eval()
        make_bench_model.export_onnx(mlm, onnx_dir, ids.shape[1], stem="model", output="logits")
    xml = onnx_dir / "model.ov-int8.xml"
    if not (xml.exists() and xml.with_suffix(".bin").exists()):
        ov_quantize(f32_onnx, xml, vocab, ids.shape[1])

    def top1(logits):
        return logits.reshape(-1, logits.shape[-1])[masked].argmax(-1)

    def agreement(pred):
        return float((pred == expected).mean())

    result = {"positions": int(masked.sum())}
    core = ov.Core()
    for name, path in (("ov-f32", f32_onnx), ("ov-bf16", f32_onnx), ("ov-int8", xml)):
        request = ov_compile(core, path, ids.shape[0], ids.shape[1], ov_config(name))
        request.infer({"input_ids": ids, "attention_mask": mask})
        result[name] = agreement(top1(request.get_output_tensor(0).data))
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_dir / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    result["ort-int8"] = agreement(top1(session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]))
    int8_dir = cache / "int8"
    if not (int8_dir / "model.safetensors").exists():
        subprocess.run([deberta, "convert", str(TRAINED_FIXTURE), str(int8_dir), "--dtype", "int8"], check=True,
                       stdout=subprocess.DEVNULL)
    for name, model, flags in (("deberta-f32", TRAINED_FIXTURE, []), ("deberta-bf16", TRAINED_FIXTURE, ["--precision", "bf16"]),
                               ("deberta-int8", int8_dir, []), ("deberta-int8-bf16a", int8_dir, OUR_FLAGS["deberta-int8-bf16a"])):
        out = cache / f"{name}.safetensors"
        subprocess.run([deberta, "run", str(model), "--inputs", str(heldout_path), "--output", str(out), *flags],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result[name] = agreement(top1(load_file(str(out))["logits"]))
        out.unlink()
    print(json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------------------
# Parent: orchestration


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_shapes(text: str):
    shapes = []
    for part in text.split(","):
        b, _, t = part.strip().lower().partition("x")
        shapes.append((int(b), int(t)))
    return shapes


def run_text(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni") if f in flags)
    except OSError:
        pass
    return ""


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Fma:
    """The AVX2 build (cc -O2 -mavx2 -mfma) is the reference peak of the targets; when the CPU lists avx512f an
    AVX-512 build is measured too, for information (peers' libraries use AVX-512 where the CPU has it)."""

    def __init__(self, workdir: Path):
        cc = os.environ.get("CC", "cc")
        src = workdir / "fma.c"
        src.write_text(FMA_C)
        self.exe = {}
        builds = {"avx2": ["-mavx2", "-mfma"]}
        if "avx512f" in cpu_flags().split():
            builds["avx512"] = ["-mavx512f", "-DWIDE512"]
        for name, flags in builds.items():
            exe = workdir / f"fma_{name}"
            r = subprocess.run([cc, "-O2", *flags, "-pthread", str(src), "-o", str(exe)], capture_output=True, text=True)
            if r.returncode != 0:
                if name == "avx2":
                    raise SystemExit(f"cannot build the FMA microbenchmark with {cc}:\n{r.stderr}")
                log(f"(no {name} FMA build: {r.stderr.strip()[:200]})")
                continue
            self.exe[name] = exe

    def measure(self, threads: int, seconds: float, isa: str = "avx2"):
        if isa not in self.exe:
            return None
        out = subprocess.run([str(self.exe[isa]), str(threads), str(seconds)], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


class Worker:
    def __init__(self, name: str, model_dir: Path, python: str):
        self.name = name
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", name, "--dir", str(model_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self._read()
        self.load_s = hello["load_s"]
        self.versions = hello["versions"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (code {self.proc.wait()})")
        return json.loads(line)

    def request(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.request(op="quit", batch=0, seq=0)
        except Exception:
            pass
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def deberta_bench(binary: str, model: Path, batch: int, seq: int, runs: int, flags=()) -> dict:
    cmd = [binary, "bench", str(model), "--batch", str(batch), "--seq", str(seq), "--runs", str(runs),
           "--threads", str(THREADS), "--encoder-only", "--json", *flags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cold_run(name: str, args, batch: int, seq: int) -> dict:
    """A fresh process loads the runtime and produces outputs; wall clock and rusage from here."""
    if name in OURS:
        cmd = [args.deberta, "bench", str(args.dir / OUR_DIR[name]), "--batch", str(batch), "--seq", str(seq),
               "--runs", "1", "--threads", str(THREADS), "--encoder-only", "--json", "--mark-first-output",
               *OUR_FLAGS.get(name, [])]
    else:
        cmd = [args.python, str(Path(__file__).resolve()), "--cold", name, "--dir", str(args.dir),
               "--batch", str(batch), "--seq", str(seq)]
    errfile = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True)
    first = None
    info = None
    for line in proc.stdout:
        now = time.perf_counter()
        line = line.strip()
        if line == "first-output":
            first = now - t0
        elif line.startswith("{"):
            info = json.loads(line)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    errfile.seek(0)
    err = errfile.read()
    errfile.close()
    if proc.returncode != 0 or first is None or info is None:
        raise RuntimeError(f"cold {name} {batch}x{seq} failed ({proc.returncode}): {err.strip()[-500:]}")
    return {"start_to_first_s": first, "peak_rss_mb": usage.ru_maxrss / 1024, "child": info}


def ensure_models(args) -> None:
    d = args.dir
    need_peers = any(r in PEERS for r in args.runtimes)
    if not (d / "safetensors" / "model.safetensors").exists():
        log(f"{d}/safetensors missing: running Tools/make_bench_model.py --out {d} --onnx (several minutes)")
        subprocess.run([args.python, str(REPO / "Tools" / "make_bench_model.py"), "--out", str(d), "--onnx"], check=True)
    if need_peers and not all((d / "onnx" / f).exists() for f in ONNX_FILE.values()):
        log(f"{d}/onnx/encoder*.onnx missing: running Tools/make_bench_model.py --out {d} --encoder-onnx")
        subprocess.run([args.python, str(REPO / "Tools" / "make_bench_model.py"), "--out", str(d), "--encoder-onnx"],
                       check=True)
    xml = d / "onnx" / OV_FILE["ov-int8"]
    if "ov-int8" in args.runtimes and not (xml.exists() and xml.with_suffix(".bin").exists()):
        log(f"{xml} missing: quantizing {d}/onnx/encoder.onnx with NNCF")
        vocab = json.loads((d / "safetensors" / "config.json").read_text())["vocab_size"]
        subprocess.run([args.python, str(Path(__file__).resolve()), "--make-ov-int8", str(d / "onnx" / "encoder.onnx"),
                        "--out-xml", str(xml), "--vocab", str(vocab), "--seq", "128"], check=True)
    for name, opts in CONVERT.items():
        dst = d / OUR_DIR[name]
        needed = any(OUR_DIR.get(r) == OUR_DIR[name] for r in args.runtimes)  # deberta-int8-bf16a reads DIR/int8 too
        if needed and (args.reconvert or not (dst / "model.safetensors").exists()):
            cmd = [args.deberta, "convert", str(d / "safetensors"), str(dst)] + opts
            log("$ " + " ".join(cmd))
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def fmt(x, digits=1, suffix=""):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{suffix}"


def summarize(args, results, shapes):
    """results[shape][runtime] -> dict with samples etc.; returns per-shape rows."""
    table = {}
    for shape in shapes:
        res = results[shape]
        b, t = shape
        flops = res["flops"]
        fma2 = median(res["fma2"])
        # The reference peak is the widest FMA this CPU runs (AVX-512 where it has avx512f: this runtime's f32
        # kernel and the peers' libraries use it), else AVX2.
        peak = median(res["fma512"]) or fma2
        rows = {}
        for name in args.runtimes:
            r = res["runtimes"][name]
            med = median(r["samples"])
            row = {
                "median_ms": med,
                "min_ms": min(r["samples"]) if r["samples"] else None,
                "max_ms": max(r["samples"]) if r["samples"] else None,
                "tokens_per_s": b * t / (med / 1000) if med else None,
                "peak_rss_mb": median([c["peak_rss_mb"] for c in r["cold"]]),
                "start_to_first_s": median([c["start_to_first_s"] for c in r["cold"]]),
                "gflops": flops / (med / 1000) / 1e9 if (med and flops) else None,
                "error": r.get("error"),
            }
            row["fma_pct"] = 100 * row["gflops"] / peak if (row["gflops"] and peak) else None
            rows[name] = row
        for name, row in rows.items():
            for ref in ("ort-f32", "ort-int8", "ov-f32", "ov-bf16", "ov-int8"):
                base = rows.get(ref, {}).get("median_ms")
                row["x_" + ref] = row["median_ms"] / base if (row["median_ms"] and base) else None
        table[shape] = {"rows": rows, "fma1": median(res["fma1"]), "fma2": fma2, "fma512": median(res["fma512"]), "peak": peak,
                        "fma2_max": max(res["fma2"]) if res["fma2"] else None, "flops": flops}
    return table


def print_tables(args, table, header):
    out = []
    out.append(header)
    for shape, st in table.items():
        b, t = shape
        out.append("")
        out.append(f"== batch {b} x {t} tokens == encoder last_hidden_state, {THREADS} threads, "
                   f"{fmt(st['flops'] / 1e9 if st['flops'] else None, 2)} GFLOP/call (deberta's count), "
                   f"AVX2 FMA peak {fmt(st['fma2'], 1)} GFLOP/s (2 thr, median; max {fmt(st['fma2_max'], 1)}) / "
                   f"{fmt(st['fma1'], 1)} (1 thr)"
                   + (f", AVX-512 {fmt(st['fma512'], 1)} (2 thr)" if st["fma512"] else ""))
        cols = ["runtime", "median ms", "min-max ms", "tokens/s", "x ORT f32", "x ORT int8", "x OV f32", "x OV bf16",
                "x OV int8", "peak RSS MB",
                "start->1st out s", "GFLOP/s*", "% FMA peak"]
        lines = []
        for name, row in st["rows"].items():
            if row["error"] and row["median_ms"] is None:
                lines.append([LABEL[name], "failed: " + row["error"][:60]] + [""] * (len(cols) - 2))
                continue
            lines.append([
                LABEL[name], fmt(row["median_ms"], 1),
                f"{fmt(row['min_ms'], 0)}-{fmt(row['max_ms'], 0)}",
                fmt(row["tokens_per_s"], 0), fmt(row["x_ort-f32"], 2), fmt(row["x_ort-int8"], 2),
                fmt(row["x_ov-f32"], 2), fmt(row["x_ov-bf16"], 2), fmt(row["x_ov-int8"], 2),
                fmt(row["peak_rss_mb"], 0), fmt(row["start_to_first_s"], 2), fmt(row["gflops"], 1),
                fmt(row["fma_pct"], 1, "%"),
            ])
        widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(cols)]
        out.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cols)))
        for l in lines:
            out.append("  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(l)))
    out.append("")
    out.append("* GFLOP/s of every row = deberta's operation count for the encoder at that shape / that row's "
               "median (the same work credited to all; PyTorch recomputes the position projections in every "
               "layer, so it executes more).")
    print("\n".join(out))


def load_average(uptime_text: str):
    try:
        return float(uptime_text.rpartition("load average:")[2].split(",")[0])
    except ValueError:
        return None


def checks(args, table, meta):
    lines = []
    cpus = os.cpu_count() or 1
    loads = [x for x in (load_average(meta["uptime_before"]), load_average(meta["uptime_after"])) if x is not None]
    if loads and max(loads) > 0.5 * cpus:
        lines.append(f"NOTE  the machine was busy (1-min load {', '.join(f'{x:.2f}' for x in loads)} on {cpus} CPUs): "
                     "absolute times, and the FMA-peak ratio, are unreliable; ratios measured side by side less so")

    def row(shape, name):
        return table.get(shape, {}).get("rows", {}).get(name)

    def check(label, value, limit, ok_if_le=True, unit=""):
        if value is None or limit is None:
            lines.append(f"SKIP  {label}: not measured")
            return
        ok = value <= limit if ok_if_le else value >= limit
        rel = "<=" if ok_if_le else ">="
        lines.append(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.3g}{unit} (target {rel} {limit:.3g}{unit})")

    for shape in ((1, 128), (8, 128)):
        s = f"{shape[0]}x{shape[1]}"
        for ours, peer, factor in (("deberta-f32", "ort-f32", 0.8), ("deberta-int8", "ort-int8", 0.6)):
            o, p = row(shape, ours), row(shape, peer)
            check(f"{s} {ours} median / {peer} median <= {factor}",
                  o and p and o["median_ms"] and p["median_ms"] and o["median_ms"] / p["median_ms"], factor)
        f, i = row(shape, "deberta-f32"), row(shape, "deberta-int8")
        check(f"{s} deberta-f32 median / deberta-int8 median >= 1.6 (guide: int8 1.6x faster than own f32)",
              f and i and f["median_ms"] and i["median_ms"] and f["median_ms"] / i["median_ms"], 1.6, ok_if_le=False)
        for ours, peer in (("deberta-f32", "ort-f32"), ("deberta-int8", "ort-int8")):
            o, p = row(shape, ours), row(shape, peer)
            check(f"{s} {ours} peak RSS / {peer} peak RSS <= 0.4",
                  o and p and o["peak_rss_mb"] and p["peak_rss_mb"] and o["peak_rss_mb"] / p["peak_rss_mb"], 0.4)
            check(f"{s} {ours} start-to-first-output / {peer} load+first run <= 0.25",
                  o and p and o["start_to_first_s"] and p["start_to_first_s"]
                  and o["start_to_first_s"] / p["start_to_first_s"], 0.25)
    # Against OpenVINO (issue 12), at every shape measured of 1x128, 8x128, 1x512.
    for shape in ((1, 128), (8, 128), (1, 512)):
        if shape not in table:
            continue
        s = f"{shape[0]}x{shape[1]}"
        for ours, peer, factor in (("deberta-f32", "ov-f32", 0.75), ("deberta-bf16", "ov-bf16", 0.8),
                                   ("deberta-int8", "ov-int8", 0.7), ("deberta-int8-bf16a", "ov-int8", 0.7)):
            o, p = row(shape, ours), row(shape, peer)
            check(f"{s} {ours} median / {peer} median <= {factor}",
                  o and p and o["median_ms"] and p["median_ms"] and o["median_ms"] / p["median_ms"], factor)
        f, h = row(shape, "deberta-f32"), row(shape, "deberta-bf16")
        check(f"{s} deberta-f32 median / deberta-bf16 median >= 1.7",
              f and h and f["median_ms"] and h["median_ms"] and f["median_ms"] / h["median_ms"], 1.7, ok_if_le=False)
    f = row((8, 128), "deberta-f32")
    check("8x128 deberta-f32 throughput / 2-thread FMA peak >= 65%",
          f and f["fma_pct"], 65.0, ok_if_le=False, unit="%")
    return lines


def markdown(args, table, meta):
    out = [f"Encoder (last_hidden_state), random DeBERTa-v3-base-shaped weights, {THREADS} threads, medians of "
           f"{args.runs} alternating runs; {meta['date']}, {meta['cpu']}; load {meta['load_before']} before, "
           f"{meta['load_after']} after; {meta['versions']}.", "",
           "| shape | runtime | median ms | tokens/s | × ORT f32 | × ORT int8 | × OV f32 | × OV bf16 | × OV int8 "
           "| peak RSS MB | start → 1st output s | GFLOP/s | % FMA peak |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, st in table.items():
        for name, row in st["rows"].items():
            out.append(f"| {shape[0]} × {shape[1]} | {LABEL[name]} | {fmt(row['median_ms'], 1)} | "
                       f"{fmt(row['tokens_per_s'], 0)} | {fmt(row['x_ort-f32'], 2)} | {fmt(row['x_ort-int8'], 2)} | "
                       f"{fmt(row['x_ov-f32'], 2)} | {fmt(row['x_ov-bf16'], 2)} | {fmt(row['x_ov-int8'], 2)} | "
                       f"{fmt(row['peak_rss_mb'], 0)} | {fmt(row['start_to_first_s'], 2)} | {fmt(row['gflops'], 1)} | "
                       f"{fmt(row['fma_pct'], 1, '%')} |")
    fma = [st["peak"] for st in table.values() if st["peak"]]
    wide = any(st["fma512"] for st in table.values())
    out.append("")
    out.append(f"GFLOP/s: this runtime's operation count for the encoder at each shape, divided by each row's median; "
               f"% FMA peak: of independent {'AVX-512' if wide else 'AVX2'} FMAs on 2 threads measured in the same "
               f"run, median {fmt(median(fma), 1)} GFLOP/s. "
               "Peak RSS and start → first output: a fresh process per runtime (Python start-up and imports "
               "included for the peers).")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"bench model directory (default {DEFAULT_DIR})")
    ap.add_argument("--deberta", default=None,
                    help="deberta binary (default: .build/release/deberta)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the PyTorch / ONNX Runtime processes (default: this one)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per runtime and shape (default 10; 3 with --quick)")
    ap.add_argument("--per-round", type=int, default=1,
                    help="calls per runtime in each round (default 1: every call alternates)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per shape before the peers' rounds")
    ap.add_argument("--cold-rounds", type=int, default=None,
                    help="fresh processes per runtime and shape for peak RSS / start-to-first-output (default 3; 1 with --quick)")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"BxT list (default {DEFAULT_SHAPES})")
    ap.add_argument("--runtimes", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    ap.add_argument("--fma-seconds", type=float, default=None, help="seconds per FMA measurement (default 0.3; 0.15 with --quick)")
    ap.add_argument("--gap", type=float, default=0.05, help="pause between calls of different runtimes (s), lets idle threads park")
    ap.add_argument("--quick", action="store_true", help="3 runs, 1 cold round, shorter FMA measurements")
    ap.add_argument("--markdown", action="store_true", help="also print a README-ready markdown table")
    ap.add_argument("--json-out", type=Path, help="write all samples and the summary as JSON")
    ap.add_argument("--reconvert", action="store_true", help="re-run deberta convert for the int8 / q4 directories")
    ap.add_argument("--no-accuracy", action="store_true",
                    help="skip the masked top-1 agreements on the trained fixture (printed when OpenVINO int8 runs)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--make-ov-int8", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out-xml", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--fixture-accuracy", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cold", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.dir = args.dir.expanduser()

    if args.worker:
        return worker_main(args.worker, args.dir)
    if args.make_ov_int8:
        ov_quantize(args.make_ov_int8, args.out_xml, args.vocab, args.seq)
        return 0
    if args.fixture_accuracy:
        return fixture_accuracy_main(args.deberta, args.fixture_accuracy)
    if args.cold:
        return cold_main(args.cold, args.dir, args.batch, args.seq)

    args.runs = args.runs or (3 if args.quick else 10)
    args.cold_rounds = args.cold_rounds or (1 if args.quick else 3)
    args.fma_seconds = args.fma_seconds or (0.15 if args.quick else 0.3)
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    for r in args.runtimes:
        if r not in ALL:
            ap.error(f"unknown runtime {r}; choose from {','.join(ALL)}")
    shapes = parse_shapes(args.shapes)
    if args.deberta is None:
        cand = REPO / ".build" / "release" / "deberta"
        if not cand.exists():
            ap.error("no deberta binary found; build it (swift build -c release --product deberta) or pass --deberta")
        args.deberta = str(cand)
    if any(r in PEERS for r in args.runtimes):
        try:
            ov = ", openvino, nncf" if any(r in OV_FILE for r in args.runtimes) else ""
            subprocess.run([args.python, "-c", "import torch, transformers, onnxruntime, numpy" + ov], check=True,
                           capture_output=True)
        except subprocess.CalledProcessError:
            ap.error(f"{args.python} lacks torch/transformers/onnxruntime/openvino/nncf; run with $(Tools/reference_env.sh)")

    ensure_models(args)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "uname": run_text(["uname", "-a"]),
        "cpu": f"{cpu_model()} ({os.cpu_count()} CPUs; {cpu_flags()})",
        "uptime_before": run_text(["uptime"]),
        "deberta": args.deberta,
        "git": run_text(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }
    meta["load_before"] = meta["uptime_before"].rpartition("load average:")[2].strip()
    log(f"{meta['date']}  {meta['uptime_before']}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_peers_"))
    workers = {}
    results = {}
    try:
        fma = Fma(tmp)
        versions = {}
        for name in args.runtimes:
            if name in PEERS:
                log(f"loading {name} worker ...")
                workers[name] = Worker(name, args.dir, args.python)
                versions.update(workers[name].versions)
        meta["versions"] = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "no peers"
        rounds = max(1, -(-args.runs // args.per_round))
        for shape in shapes:
            b, t = shape
            res = results[shape] = {"runtimes": {n: {"samples": [], "cold": [], "all_ms": []} for n in args.runtimes},
                                    "fma1": [], "fma2": [], "fma512": [], "flops": None}
            for name, w in workers.items():
                w.request(op="warmup", batch=b, seq=t, calls=args.warmup)
            log(f"shape {b}x{t}: {rounds} rounds x {args.per_round} call(s) per runtime")
            order = list(args.runtimes) + ["fma"]
            for rnd in range(rounds):
                k = min(args.per_round, args.runs - rnd * args.per_round)
                rot = order[rnd % len(order):] + order[:rnd % len(order)]
                for name in rot:
                    if name == "fma":
                        res["fma2"].append(fma.measure(2, args.fma_seconds))
                        res["fma1"].append(fma.measure(1, args.fma_seconds))
                        res["fma512"].append(fma.measure(2, args.fma_seconds, "avx512"))
                    elif name in workers:
                        times = workers[name].request(op="run", batch=b, seq=t, calls=k)["times_ms"]
                        res["runtimes"][name]["all_ms"] += times
                        res["runtimes"][name]["samples"].append(statistics.median(times))
                    else:
                        try:
                            j = deberta_bench(args.deberta, args.dir / OUR_DIR[name], b, t, k, OUR_FLAGS.get(name, []))
                        except RuntimeError as exc:
                            res["runtimes"][name]["error"] = str(exc)
                            log(str(exc))
                            continue
                        res["runtimes"][name]["samples"].append(j["median_ms"])
                        if name == "deberta-f32" or res["flops"] is None:
                            res["flops"] = j["gflops"] * 1e9 * j["median_ms"] / 1000
                    time.sleep(args.gap)
                log(f"  round {rnd + 1}/{rounds}: " + ", ".join(
                    f"{n} {res['runtimes'][n]['samples'][-1]:.0f}" for n in args.runtimes if res["runtimes"][n]["samples"])
                    + f", fma {res['fma2'][-1]:.0f}")
            for rnd in range(args.cold_rounds):
                rot = args.runtimes[rnd % len(args.runtimes):] + args.runtimes[:rnd % len(args.runtimes)]
                for name in rot:
                    try:
                        res["runtimes"][name]["cold"].append(cold_run(name, args, b, t))
                    except RuntimeError as exc:
                        res["runtimes"][name]["error"] = str(exc)
                        log(str(exc))
                    time.sleep(args.gap)
                log(f"  cold {rnd + 1}/{args.cold_rounds}: " + ", ".join(
                    f"{n} {res['runtimes'][n]['cold'][-1]['start_to_first_s']:.2f}s "
                    f"{res['runtimes'][n]['cold'][-1]['peak_rss_mb']:.0f}MB"
                    for n in args.runtimes if res["runtimes"][n]["cold"]))
    finally:
        for w in workers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)

    accuracy = None
    if "ov-int8" in args.runtimes and not args.no_accuracy:
        log("masked top-1 agreement on the trained fixture ...")
        cache = args.dir.parent / "v3-mlm-trained"
        r = subprocess.run([args.python, str(Path(__file__).resolve()), "--fixture-accuracy", str(cache),
                            "--deberta", args.deberta], capture_output=True, text=True)
        if r.returncode != 0:
            log(f"fixture accuracy failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        else:
            accuracy = json.loads(r.stdout.strip().splitlines()[-1])

    meta["uptime_after"] = run_text(["uptime"])
    meta["load_after"] = meta["uptime_after"].rpartition("load average:")[2].strip()
    table = summarize(args, results, shapes)
    header = "\n".join([
        f"bench_peers.py  {meta['date']}",
        f"uname       {meta['uname']}",
        f"cpu         {meta['cpu']}",
        f"uptime      before: {meta['uptime_before']}",
        f"            after:  {meta['uptime_after']}",
        f"runtimes    {meta['versions']}; deberta {meta['deberta']} (repo {meta['git']})",
        f"model       {args.dir} (random DeBERTa-v3-base shape)",
        f"timed       encoder only: input_ids [B, T] + all-ones mask -> last_hidden_state [B, T, 768]; "
        f"{THREADS} threads; {args.runs} runs per runtime in alternating rounds ({args.per_round} call(s) per "
        f"round), medians; peak RSS and start-to-first-output from {args.cold_rounds} fresh process(es) each",
    ])
    print_tables(args, table, header)
    if accuracy:
        print()
        print(f"Masked top-1 agreement with f32 (transformers float64) on {TRAINED_FIXTURE.name} held-out text, "
              f"{accuracy['positions']} masked positions, plain MLM head:")
        for name in ("deberta-f32", "deberta-bf16", "deberta-int8", "deberta-int8-bf16a", "ov-f32", "ov-bf16", "ov-int8",
                     "ort-int8"):
            if name in accuracy:
                print(f"  {LABEL[name]:<36} {100 * accuracy[name]:.2f}%")
        p = accuracy.get("ov-int8")
        for name in ("deberta-int8", "deberta-int8-bf16a"):
            o = accuracy.get(name)
            if o is not None and p is not None:
                print(f"  {'PASS' if o >= p else 'FAIL'}  {LABEL[name]} agreement >= OpenVINO int8's "
                      f"({100 * o:.2f}% vs {100 * p:.2f}%)")
    print()
    print("Acceptance ratios (project targets):")
    for line in checks(args, table, meta):
        print("  " + line)
    if args.markdown:
        print()
        print(markdown(args, table, meta))
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
            "results": {f"{b}x{t}": r for (b, t), r in results.items()},
            "summary": {f"{b}x{t}": s for (b, t), s in table.items()},
            "fixture_accuracy": accuracy,
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
