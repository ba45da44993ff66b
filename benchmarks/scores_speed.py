"""Speed of the batched extractive scores against the paper-style reference and the pass floor.

In one run, on the same model, items and delta, this times:

(a) ``extractive_scores``: all three scores, N items x K counterfactuals, batched;
(b) the per-example reference of the paper's algorithm (``scores.reference``): about five
    forward+backward passes per (item, counterfactual) pair at batch size 1, informative
    recomputed for every pair, parameter gradients formed as ``loss.backward()`` would;
(c) the floor: 3 forwards + 2 backwards of the same batch (the backwards to the activations only,
    the forwards unembedding only the last prompt positions, as (a) does).

It checks that (a) and (b) agree, prints a table and, as its last line,
``speedup_vs_reference=<x> ratio_to_floor=<y>``, and writes
``benchmarks/results/scores_speed.json``.

    python benchmarks/scores_speed.py                       # tiny random Llama (GQA), seconds
    python benchmarks/scores_speed.py --arch gpt-neox       # any tested family, tiny and random
    python benchmarks/scores_speed.py --model smollm2-135m  # the real model, minutes

The delta is random (about 1e-3 of each block weight's scale): speed does not depend on its
values. Peak memory is the peak CUDA allocation while a method runs, or on CPU the largest
resident-set growth while it runs once in a fresh process (the reference on one pair), run with
glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` so that every block above 128 KiB is its own mapping:
otherwise memory freed while loading the model is reused by the measured call at random (the
floor then read anywhere from 576 to 799 MiB on SmolLM2; with it, 436-437 MiB).
``--reference-items N`` times (b) on the first N items only and scales its time to all items
(each pair costs the same), for the real model on a slow machine.

``--memory-only`` skips the timing and the reference: it probes the peak memory of (a) and of the
floor (one batch of ``--batch-size`` items) in fresh processes, for ``--items`` and, with
``--growth G``, for G times as many items at the same batch size (the split's items repeated:
counterfactuals are drawn across batches). Table on stdout, JSON in
``benchmarks/results/scores_memory.json``:

    flock /tmp/heavy.lock python benchmarks/scores_speed.py --model smollm2-135m \
        --memory-only --items 20 --growth 4 --batch-size 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from extractive_lens.data import first_hop, first_token_ids  # noqa: E402
from extractive_lens.delta import WeightDelta  # noqa: E402
from extractive_lens.metrics import answer_index, encode, model_device, prompt_ids  # noqa: E402
from extractive_lens.models import (  # noqa: E402
    load_model,
    model_identity,
    named_parameters,
    tiny_model,
)
from extractive_lens.scores import extractive_scores  # noqa: E402
from extractive_lens.scores.align import align, sample_counterfactuals  # noqa: E402
from extractive_lens.scores.passes import target_forward  # noqa: E402
from extractive_lens.scores.reference import reference_scores  # noqa: E402
from extractive_lens.structure import model_structure  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scores_speed.json"


class PeakMemory:
    """Peak memory growth (MiB) while the block runs: CUDA allocations, else process RSS."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak = 0.0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.top = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.top = max(self.top, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
            return
        self.running = False
        self.thread.join()
        self.peak = (max(self.top, self.proc.memory_info().rss) - self.base) / 2**20


def timed(fns, repeats: int, device: torch.device) -> list[tuple[float, object, float]]:
    """For each function: best wall time of ``repeats`` runs (after one warm-up), its result,
    and on CUDA its peak memory (MiB; on CPU memory is probed in a fresh process, never while
    timing). The functions take turns within each repeat, so that a slow spell of the machine
    hits all of them and their ratio stays meaningful."""
    outs = [fn() for fn in fns]
    best, peak = [float("inf")] * len(fns), [0.0] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            outs[k] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak[k] = max(peak[k], (torch.cuda.max_memory_allocated() - base) / 2**20)
            best[k] = min(best[k], time.perf_counter() - start)
    return list(zip(best, outs, peak, strict=True))


def floor(model, batch, answers, option_ids) -> None:
    """3 forwards + 2 backwards (to the activations) of the batch: the cost floor."""
    captured = {}

    def grab(x, hook):
        x = x.view_as(x)
        captured["x"] = x
        return x

    for _ in range(2):
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", grab)]):
            r = target_forward(model, batch, answers, option_ids)
        torch.autograd.grad(r.sum(), [captured["x"]])
    with torch.no_grad():
        target_forward(model, batch, answers, option_ids)


def probe(method: str) -> float:
    """Peak memory growth (MiB) of one method in a fresh process (same arguments)."""
    import subprocess
    import sys

    argv = [a for a in sys.argv[1:]]
    out = subprocess.run(
        [sys.executable, __file__, *argv, "--memory-probe", method],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},  # see the module doc
    ).stdout
    return float(out.strip().splitlines()[-1].split("=")[1])


def random_delta(model, scale: float = 1e-3, seed: int = 0) -> WeightDelta:
    gen = torch.Generator().manual_seed(seed)
    return WeightDelta(
        {
            n: scale * p.detach().float().std().cpu() * torch.randn(p.shape, generator=gen)
            for n, p in named_parameters(model).items()
            if n in model_structure(model).trainable  # the block linear weights
        }
    )


def max_difference(ours, ref) -> tuple[float, float]:
    """Largest absolute difference between (a) and (b), and the largest |score| for scale."""
    err = scale = 0.0
    for role, per_item in ref.items():
        mine = getattr(ours, role)
        for i, kinds in enumerate(per_item):
            n = len(mine.tokens[i])
            for kind, value in kinds.items():
                a = getattr(mine, kind)[i, :n]
                err = max(err, float((a - value.to(a.device)).abs().max()))
                scale = max(scale, float(value.abs().max()))
    return err, scale


def memory_table(args, model, device) -> None:
    """Peak memory of (a) at ``items`` and ``growth x items`` and of the floor (fresh processes)."""
    import sys

    def with_items(n: int) -> None:
        sys.argv = [a for a in sys.argv if a != "--memory-only"]
        i = sys.argv.index("--items") if "--items" in sys.argv else None
        if i is None:
            sys.argv += ["--items", str(n)]
        else:
            sys.argv[i + 1] = str(n)

    sizes = [args.items] + ([args.items * args.growth] if args.growth > 1 else [])
    rows = []
    with_items(args.items)
    floor_mib = probe("floor")
    for n in sizes:
        with_items(n)
        rows.append({"items": n, "peak_mib": probe("ours")})
    identity = model_identity(model)
    print(
        f"model {identity['name']}, batch size {args.batch_size}, {args.counterfactuals} "
        f"counterfactuals, device {device}, {torch.get_num_threads()} threads"
    )
    print(f"{'items':>6}{'scores MiB':>12}{'floor MiB':>11}{'ratio':>8}")
    for r in rows:
        r["ratio_to_floor"] = r["peak_mib"] / floor_mib
        print(f"{r['items']:>6}{r['peak_mib']:>12.1f}{floor_mib:>11.1f}{r['ratio_to_floor']:>8.2f}")
    growth = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
    print(f"growth of the scores' peak over {sizes[-1] // sizes[0]}x items: {growth:.3f}x")
    result = {
        "model": identity,
        "batch_size": args.batch_size,
        "counterfactuals": args.counterfactuals,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "floor_peak_mib": floor_mib,
        "scores": rows,
        "growth": growth,
    }
    out = args.out.with_name("scores_memory.json") if args.out == RESULTS else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny (default) or smollm2-135m")
    parser.add_argument(
        "--arch", default="llama", help="family of the tiny model (extractive_lens.families)"
    )
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--counterfactuals", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of (a) and (c)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--reference-items",
        type=int,
        default=None,
        help="run (b) on the first N items only and scale its time to all items (default: all)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--memory-probe", choices=["ours", "reference", "floor"], help=argparse.SUPPRESS
    )
    parser.add_argument("--memory-only", action="store_true", help="peak memory of (a), (c)")
    parser.add_argument("--growth", type=int, default=1, help="with --memory-only: items x G")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model == "tiny":
        from extractive_lens.families import FAMILIES

        kv = 2 if FAMILIES[args.arch].gqa else None
        model = tiny_model(args.arch, n_layers=2, d_model=64, n_heads=4, n_kv_heads=kv)
    else:
        model = load_model(args.model)
    if args.device:
        model = model.to(args.device)
    device = model_device(model)
    data = first_hop()
    pool = list(data.implications)
    items = (pool * -(-args.items // len(pool)))[: args.items]  # repeated beyond one split
    options = list(data.implication_options)
    delta = random_delta(model)
    k = args.counterfactuals

    def ours():
        return extractive_scores(
            model, delta, items, options, counterfactuals=k, seed=3, batch_size=args.batch_size
        )

    floor_items = items[: args.batch_size]  # the floor of one batch
    batch = encode(model.tokenizer, floor_items, with_answers=False)
    answers = answer_index(floor_items, options)
    option_ids = torch.tensor(first_token_ids(model.tokenizer, options))

    n_ref = min(args.reference_items or len(items), len(items))

    def reference():
        return reference_scores(
            model, delta, items, options, counterfactuals=ours_table, first=n_ref
        )

    def run_floor():
        floor(model, batch, answers, option_ids)

    if args.memory_probe:  # a fresh process measuring one method's peak memory
        fn = {"ours": ours, "reference": reference, "floor": run_floor}[args.memory_probe]
        if args.memory_probe == "reference":
            ids = [prompt_ids(model.tokenizer, e.prompt) for e in items]
            table = sample_counterfactuals(align(model.tokenizer, items, ids), items, k, 3)
            ours_table, n_ref = table[:, :1], 1  # one pair: its memory does not grow with pairs
        with PeakMemory(device) as mem:
            fn()
        print(f"peak_mib={mem.peak}")
        return

    if args.memory_only:
        memory_table(args, model, device)
        return
    (t_ours, scores, mem_ours), (t_floor, _, mem_floor) = timed(
        [ours, run_floor], args.repeats, device
    )
    ours_table = scores.upstream.counterfactuals
    start = time.perf_counter()
    ref = reference()
    t_ref = (time.perf_counter() - start) * len(items) / n_ref
    if device.type == "cpu":  # RSS is only meaningful in a fresh process
        mem_ours, mem_ref, mem_floor = (probe(m) for m in ("ours", "reference", "floor"))
    else:
        with PeakMemory(device) as mem:
            reference()
        mem_ref = mem.peak
    err, scale = max_difference(scores, ref)
    # fp32 through different batch shapes and kernels: agree to 1e-3 of the largest score
    agree = err <= 1e-3 * scale + 1e-6

    pairs = len(items) * k
    rows = [
        ("(a) extractive_scores (batched)", t_ours, mem_ours, "3 fwd + 2 bwd per batch"),
        (
            "(b) paper-style reference",
            t_ref,
            mem_ref,
            f"{5 * pairs} fwd+bwd at batch 1"
            + (f" (timed on {n_ref * k} pairs, scaled)" if n_ref < len(items) else ""),
        ),
        ("(c) floor: 3 fwd + 2 bwd", t_floor, mem_floor, "same batch, activations only"),
    ]
    identity = model_identity(model)
    print(
        f"model {identity['name']} ({identity['n_layers']} layers, d_model {identity['d_model']}),"
        f" {len(items)} items x {k} counterfactuals, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'method':<34}{'seconds':>10}{'peak MiB':>10}  passes")
    for name, t, m, note in rows:
        print(f"{name:<34}{t:>10.3f}{m:>10.1f}  {note}")
    print(
        f"(a) vs (b): max |difference| {err:.3g} (largest |score| {scale:.3g}): "
        + ("agree" if agree else "DISAGREE")
    )
    result = {
        "model": identity,
        "items": len(items),
        "counterfactuals": k,
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "reference_items_timed": n_ref,
        "seconds": {"ours": t_ours, "reference": t_ref, "floor": t_floor},
        "peak_mib": {"ours": mem_ours, "reference": mem_ref, "floor": mem_floor},
        "max_abs_difference": err,
        "max_abs_score": scale,
        "agree": agree,
        "speedup_vs_reference": t_ref / t_ours,
        "ratio_to_floor": t_ours / t_floor,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"speedup_vs_reference={result['speedup_vs_reference']:.1f} "
        f"ratio_to_floor={result['ratio_to_floor']:.2f}"
    )
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
