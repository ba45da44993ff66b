"""Peak memory and seconds per item of the scores and of one finetuning step, across model sizes.

Random-initialised models of real shapes (configs written by hand below, no hub), wrapped by the
bridge like any model, in fp32 and bf16:

    smollm2-135m  30 layers, d_model 576, d_mlp 1536, 9 heads / 3 KV heads, vocab 49152
    qwen2.5-0.5b  24 layers, d_model 896, d_mlp 4864, 14 heads / 2 KV heads, vocab 151936
    llama-3.2-1b  16 layers, d_model 2048, d_mlp 8192, 32 heads / 8 KV heads, vocab 128256
    olmo2-7b      32 layers, d_model 4096, d_mlp 11008, 32 heads, vocab 100352 (GPU, below)

All are built as Llama-architecture models with those dimensions: ``components.py`` maps Llama
and GPT-2 layouts only, so Qwen2's q/k/v biases (0.1% of its parameters) and OLMo-2's q/k norms
and post-norms (norm scales, a few thousand parameters per layer) are left out; the memory and
time of the linear maps, attention and unembedding, which dominate, are the real models'.

For each shape and dtype it measures, on ``--layers A B`` of the real depth (default: a few layers,
so that CPU runs stay short), the extractive scores (``extractive_scores``: informative, downstream
and upstream, K counterfactuals) of ``--items`` first-hop implication prompts and one Adam step of
``finetune`` on a batch of facts: wall seconds per item and peak memory growth above the loaded
model. From the two depths it fits ``cost = fixed + per_layer x layers`` and **extrapolates to the
real depth** (marked "extrapolated" in the table; for SmolLM2 in fp32 the real depth is also
measured once, to check the extrapolation). Growth with items (x2) and with sequence length (a
longer prompt: the same prompts behind a fixed preamble) is measured on the shallower model.

Peak memory on CPU is the largest resident-set growth (sampled every 2 ms) while the call runs,
above the resident set just before it; on CUDA the peak allocation. So that memory freed by one
call is not silently reused by the next (which would hide its peak), the script runs with glibc's
``MALLOC_MMAP_THRESHOLD_=131072`` (every block above 128 KiB is its own mapping, returned to the
system when freed) and calls ``malloc_trim`` before each measurement. Timings on a shared machine
are "loaded": compare ratios within one run.

    flock /tmp/heavy.lock python benchmarks/memory_scale.py              # CPU, about 5-10 min
    python benchmarks/memory_scale.py --device cuda --shape olmo2-7b \\
        --dtype bfloat16 --layers 32 --items 64 --batch-size 16          # GPU: tokens/s, peak

Writes a table to stdout and JSON to ``benchmarks/results/memory_scale.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scores_speed import PeakMemory, random_delta  # noqa: E402

from extractive_lens.data import first_hop  # noqa: E402
from extractive_lens.models import load_model, load_tokenizer  # noqa: E402
from extractive_lens.scores import extractive_scores  # noqa: E402
from extractive_lens.training import finetune  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "memory_scale.json"
PREAMBLE = "Read the following sentence carefully and answer with a single word. " * 3

#: Hand-written configs of the real models (public config.json values).
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(
        arch="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    ),
    "qwen2.5-0.5b": dict(
        arch="llama",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
    ),
    "llama-3.2-1b": dict(
        arch="llama",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
        rope_theta=500000.0,
    ),
    "olmo2-7b": dict(
        arch="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=100352,
        tie_word_embeddings=False,
        rope_theta=500000.0,
    ),
}
#: Depths measured on CPU by default (fits the 2-core, shared machine's time and memory).
CPU_LAYERS = {"smollm2-135m": (2, 4), "qwen2.5-0.5b": (2, 4), "llama-3.2-1b": (1, 2)}


def build(shape: str, layers: int, dtype: torch.dtype, device: str, seed: int = 0):
    """A random model of ``shape`` with ``layers`` blocks, wrapped by the bridge."""
    import transformers

    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    config_cls, model_cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM)}[
        arch
    ]
    tokenizer = load_tokenizer()  # SmolLM2's; its ids fit every vocabulary above
    spec.update(num_hidden_layers=layers, max_position_embeddings=512)
    config = config_cls(
        **spec, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: a 7B model never exists in fp32
    try:
        with torch.device(device):
            hf = model_cls(config)
    finally:
        torch.set_default_dtype(default)
    hf.config._name_or_path = f"random-{shape}-L{layers}"
    return load_model(hf_model=hf, tokenizer=tokenizer, device=device, dtype=dtype)


def measure(fn, device: torch.device) -> tuple[float, float]:
    """(seconds, peak MiB growth) of one call, after a warm-up call."""
    fn()
    gc.collect()
    if device.type == "cpu":
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, mem.peak


def workloads(model, items, facts, options, k: int, batch_size: int):
    delta = random_delta(model)

    def scores():
        extractive_scores(
            model, delta, items, options, counterfactuals=k, batch_size=batch_size, seed=3
        )

    def step():  # one Adam step on one batch (epoch 0's evaluation is a forward of the batch)
        finetune(
            model, facts[:batch_size], lr=1e-5, epochs=1, batch_size=batch_size, progress=False
        )

    return scores, step


def run_one(args, shape: str, dtype: torch.dtype, layers: int, growth: bool) -> list[dict]:
    device = torch.device(args.device)
    data = first_hop()
    items = (list(data.implications) * 8)[: args.items]
    options = list(data.implication_options)
    facts = list(data.facts) * 2
    model = build(shape, layers, dtype, args.device)
    rows = []
    variants = [("base", items)]
    if growth:
        long = [
            dataclasses.replace(
                e, prompt=PREAMBLE + e.prompt, template=e.template and PREAMBLE + e.template
            )
            for e in items
        ]
        variants += [("items x2", (list(data.implications) * 8)[: 2 * args.items]), ("long", long)]
    n_tokens = [len(model.tokenizer(e.prompt).input_ids) for e in items]
    for name, chosen in variants:
        scores, step = workloads(model, chosen, facts, options, args.counterfactuals, args.batch)
        t_scores, m_scores = measure(scores, device)
        row = dict(shape=shape, dtype=str(dtype).removeprefix("torch."), layers=layers)
        row.update(variant=name, items=len(chosen), prompt_tokens=sum(n_tokens) / len(n_tokens))
        if name == "long":
            long_tokens = [len(model.tokenizer(e.prompt).input_ids) for e in chosen]
            row["prompt_tokens"] = sum(long_tokens) / len(long_tokens)
        row.update(scores_s_per_item=t_scores / len(chosen), scores_peak_mib=m_scores)
        row["scores_tokens_per_s"] = row["prompt_tokens"] * len(chosen) / t_scores
        if name == "base" and not args.no_step:
            t_step, m_step = measure(step, device)
            row.update(step_s_per_item=t_step / args.batch, step_peak_mib=m_step)
            row["step_tokens_per_s"] = row["prompt_tokens"] * args.batch / t_step
        rows.append(row)
        print(_line(row), flush=True)
    del model
    gc.collect()
    return rows


def extrapolate(rows: list[dict]) -> list[dict]:
    """Per (shape, dtype): fit fixed + per_layer x layers on the two base depths, at real depth."""
    out = []
    keys = ("scores_s_per_item", "scores_peak_mib", "step_s_per_item", "step_peak_mib")
    keys = [k for k in keys if all(k in r for r in rows if r["variant"] == "base")]
    for shape in SHAPES:
        for dtype in ("float32", "bfloat16"):
            base = sorted(
                (
                    r
                    for r in rows
                    if (r["shape"], r["dtype"], r["variant"]) == (shape, dtype, "base")
                ),
                key=lambda r: r["layers"],
            )
            depths = sorted({r["layers"] for r in base})
            if len(depths) < 2:
                continue
            a, b = base[0], base[-1]
            full = SHAPES[shape]["num_hidden_layers"]
            row = dict(shape=shape, dtype=dtype, layers=full, variant="extrapolated")
            for k in keys:
                slope = (b[k] - a[k]) / (b["layers"] - a["layers"])
                row[k] = b[k] + slope * (full - b["layers"])
                row[f"{k}_per_layer"] = slope
            out.append(row)
            print(_line(row), flush=True)
    return out


def _line(r: dict) -> str:
    step = (
        f"{r['step_s_per_item']:>9.3f}{r['step_peak_mib']:>10.0f}"
        if "step_s_per_item" in r
        else f"{'':>9}{'':>10}"
    )
    return (
        f"{r['shape']:<14}{r['dtype']:<9}{r['layers']:>4} {r['variant']:<13}"
        f"{r.get('items', ''):>6}{r['scores_s_per_item']:>10.3f}{r['scores_peak_mib']:>10.0f}"
        + step
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", nargs="+", default=list(CPU_LAYERS), choices=list(SHAPES))
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="depths (default: few)")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--counterfactuals", type=int, default=4)
    parser.add_argument("--batch-size", dest="batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-step",
        action="store_true",
        help="skip the finetuning step (Adam's fp32 state of a 7B model's block linears is ~80 GB)",
    )
    args = parser.parse_args()
    if args.device == "cpu" and os.environ.get("MALLOC_MMAP_THRESHOLD_") != "131072":
        import sys

        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # see the module doc
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    if args.device == "cpu" and "olmo2-7b" in args.shape and not args.layers:
        raise SystemExit("olmo2-7b is for --device cuda (or give --layers for a shallow CPU run)")
    print(
        f"{'shape':<14}{'dtype':<9}{'L':>4} {'variant':<13}{'items':>6}{'score s/it':>10}"
        f"{'score MiB':>10}{'step s/it':>9}{'step MiB':>10}"
    )
    start = time.perf_counter()
    rows = []
    for shape in args.shape:
        depths = args.layers or CPU_LAYERS.get(shape, (SHAPES[shape]["num_hidden_layers"],))
        for dtype in args.dtype:
            for i, layers in enumerate(depths):
                rows += run_one(args, shape, getattr(torch, dtype), layers, growth=i == 0)
    rows += extrapolate(rows)
    result = {
        "rows": rows,
        "items": args.items,
        "counterfactuals": args.counterfactuals,
        "batch_size": args.batch,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"total {result['seconds']:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
