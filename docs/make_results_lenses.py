"""The experiments of docs/results_lenses.md: subnetworks, memorization and dose on world models.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python docs/make_results_lenses.py pretrain --seeds 0 1 2
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python docs/make_results_lenses.py core memo dose
    python docs/make_results_lenses.py write       # tables (markdown) from the stored runs

Stages (each resumable: a finished seed's JSON in ``--runs`` is reused):

- ``pretrain``: world models per seed (``interleaved`` and ``facts_only`` curricula, repeats 150,
  the ordering experiment's recipe; seed s = world, corpus and initialisation seed).
- ``core`` (a): OCR finetune (``verify_ocr``, lr 1e-3, 10 epochs, paraphrased facts: the world
  ordering experiment's ``all`` recipe) of the ``interleaved`` model on ``zong``, then
  ``heuristic_core`` on the finetuned model: sparsities 0.3 / 0.5 / 0.7, mask seeds 0-2.
- ``memo`` (b): ``memorization`` of ``first_hop`` and ``zong`` against the exact pretraining
  corpus, before and after the same OCR finetune.
- ``dose`` (c), a *continued-training variant* of the curriculum: from the ``facts_only`` model
  (no implications anywhere), train the known people's implications (speaks, lives_in_country,
  zong; templates cycled) k times each (k = 0, 8, 32, one epoch, lr 1e-3, batch 32, block linear
  weights, the known people's facts replayed once per template), then the OCR finetune of
  ``first_hop`` and ``zong``. A graded run (k = 0 / 2 / 8 / 32 for four quarters of the known
  people) adds the per-person memorization test: log-probability vs count over known people.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractive_lens.experiments.common import markdown_table, mean_spread  # noqa: E402

CURRICULA = ("interleaved", "facts_only")
DOSES = (0, 8, 32)
GRADED = (0, 2, 8, 32)
OCR = {"lr": 1e-3, "epochs": 10, "paraphrases": True, "progress": False}
SMOKE = bool(os.environ.get("LENSES_SMOKE"))
"""A quick end-to-end check of the script on whatever models are in --runs (not for results)."""
if SMOKE:
    OCR["epochs"] = 1


def _world_setup(seed: int, curriculum: str):  # noqa: ANN202
    from extractive_lens.worlds import (
        CorpusConfig,
        ModelConfig,
        TrainConfig,
        WorldConfig,
        make_world,
    )

    world = make_world(WorldConfig(seed=seed))
    return (
        world,
        CorpusConfig(curriculum, True, 150, seed=seed),
        ModelConfig(),
        replace(TrainConfig(), seed=seed),
    )


def model_for(runs: Path, seed: int, curriculum: str) -> Any:
    """The pretrained world model of (seed, curriculum), pretraining it if needed."""
    from extractive_lens.models import load_model
    from extractive_lens.worlds import pretrain

    out = runs / "pretrain" / f"{curriculum}-seed{seed}"
    if not (out / "model" / "model.safetensors").exists():
        world, ccfg, mcfg, tcfg = _world_setup(seed, curriculum)
        start = time.perf_counter()
        pretrain(world, ccfg, mcfg, tcfg, out_dir=out, progress=False)
        print(f"pretrained {curriculum} seed {seed} in {time.perf_counter() - start:.0f} s")
    model = load_model(out / "model")
    model.cfg.model_name = f"world-{curriculum}-seed{seed}"
    return model


def _ocr(model: Any, dataset: Any) -> Any:
    from extractive_lens.experiments.ocr import verify_ocr

    return verify_ocr(model, dataset, **OCR)


def _ocr_row(result: Any) -> dict[str, Any]:
    effect, se = result.ocr_effect()
    return {"final": result.final(), "effect": effect, "se": se, "seconds": result.seconds}


def stage_core(runs: Path, seed: int, sparsities: tuple = (0.3, 0.5, 0.7)) -> dict[str, Any]:
    from extractive_lens.subnetworks import heuristic_core

    model = model_for(runs, seed, "interleaved")
    world, *_ = _world_setup(seed, "interleaved")
    data = world.zong()
    ocr = _ocr(model, data)
    start = time.perf_counter()
    from extractive_lens.subnetworks import MaskConfig

    grid: dict[str, Any] = {"sparsities": sparsities, "seeds": (0, 1, 2)}
    if SMOKE:
        grid = {"sparsities": (0.5,), "seeds": (0, 1), "config": MaskConfig(steps=20)}
    result = heuristic_core(model, data, ocr.delta, **grid)
    tag = "core" if sparsities == (0.3, 0.5, 0.7) else "core_high"
    result.save(runs / tag / f"seed{seed}", overwrite=True)
    return {
        "ocr": _ocr_row(ocr),
        "table": result.table(),
        "cores": {str(k): v for k, v in result.cores().items()},
        "overlap": result.overlap(),
        "effective_size": result.effective_size(),
        "top": {r: result.top_components(r) for r in ("informative", "upstream", "downstream")},
        "seconds": time.perf_counter() - start,
    }


def stage_memo(runs: Path, seed: int) -> dict[str, Any]:
    from extractive_lens.memorization import memorization
    from extractive_lens.worlds import build_corpus

    model = model_for(runs, seed, "interleaved")
    world, ccfg, *_ = _world_setup(seed, "interleaved")
    corpus = build_corpus(world, ccfg)
    out = {}
    for name in ("first_hop", "zong"):
        data = world.datasets()[name]
        ocr = _ocr(model, data)
        r = memorization(model, data, corpus, delta=ocr.delta, n_boot=1000, seed=seed)
        out[name] = {"ocr": _ocr_row(ocr), "table": r.table(), "seconds": r.seconds}
    return out


def _continued_examples(world: Any, doses: dict[str, int]) -> list[Any]:
    """Known people's implications, person p repeated doses[p] times (templates cycled), and the
    known people's facts once per template (replay)."""
    from extractive_lens.worlds.generator import RELATIONS

    out = []
    for fact in world.pretraining_facts():
        if fact.group != "known" or fact.entity not in doses:
            continue
        n_templates = len(RELATIONS[fact.relation].templates)
        if fact.role == "implication":
            out += [fact.render(k % n_templates) for k in range(doses[fact.entity])]
        elif fact.role == "fact" and fact.relation == "lives_in":
            out += [fact.render(k) for k in range(n_templates)]
    return out


def _continue(model: Any, examples: list[Any], seed: int) -> Any:
    from extractive_lens.training import finetune

    return finetune(model, examples, lr=1e-3, epochs=1, batch_size=32, seed=seed, progress=False)


def stage_dose(runs: Path, seed: int) -> dict[str, Any]:
    from extractive_lens.memorization import memorization
    from extractive_lens.worlds import build_corpus

    model = model_for(runs, seed, "facts_only")
    world, ccfg, *_ = _world_setup(seed, "facts_only")
    known = [p.name for p in world.people_in("known")]
    out: dict[str, Any] = {"uniform": {}, "graded": {}}
    for k in DOSES:
        train = _continued_examples(world, {p: k for p in known})
        ct = _continue(model, train, seed)
        with ct.delta.applied(model):
            out["uniform"][str(k)] = {
                name: _ocr_row(_ocr(model, world.datasets()[name]))
                for name in ("first_hop", "zong")
            }
        out["uniform"][str(k)]["n_examples"] = len(train)
        out["uniform"][str(k)]["seconds"] = ct.seconds
    graded = {p: GRADED[i * len(GRADED) // len(known)] for i, p in enumerate(known)}
    train = _continued_examples(world, graded)
    ct = _continue(model, train, seed)
    docs = build_corpus(world, ccfg).texts() + [e.text for e in train]
    for name in ("first_hop", "zong"):
        data = world.datasets()[name]
        with ct.delta.applied(model):
            r = memorization(model, data, docs, splits=["known_implications"], seed=seed)
            ocr = _ocr(model, data)
        out["graded"][name] = {"ocr": _ocr_row(ocr), "table": r.table()}
    return out


def stage_core_high(runs: Path, seed: int) -> dict[str, Any]:
    """(a) at higher targets: the per-group rounding of the deterministic mask leaves the achieved
    sparsity below the target (0.7 -> about 0.53), so 0.85 and 0.95 probe where behaviour breaks
    (same model and OCR delta: ``verify_ocr`` is deterministic for its seed)."""
    return stage_core(runs, seed, sparsities=(0.85, 0.95))


STAGES = {"core": stage_core, "core_high": stage_core_high, "memo": stage_memo, "dose": stage_dose}


def run(stage: str, runs: Path, seeds: list[int]) -> None:
    for seed in seeds:
        path = runs / stage / f"seed{seed}.json"
        if path.exists():
            continue
        start = time.perf_counter()
        if stage == "pretrain":
            for c in CURRICULA:
                model_for(runs, seed, c)
            continue
        row = STAGES[stage](runs, seed)
        row["wall_seconds"] = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=1, default=str))
        print(f"{stage} seed {seed}: {row['wall_seconds']:.0f} s", flush=True)


def _load(runs: Path, stage: str, seeds: list[int]) -> dict[int, dict]:
    out = {}
    for seed in seeds:
        path = runs / stage / f"seed{seed}.json"
        if path.exists():
            out[seed] = json.loads(path.read_text())
    return out


def _pm(values: list[float], digits: int = 2) -> str:
    m = mean_spread(values)
    if not m["n"]:
        return "n/a"
    if m["n"] == 1:
        return f"{m['mean']:.{digits}f}"
    return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"


def _merged(runs: Path, seeds: list[int]) -> dict[int, dict]:
    """Each seed's core run with its core_high rows, cores and overlap appended."""
    data = _load(runs, "core", seeds)
    for seed, high in _load(runs, "core_high", seeds).items():
        if seed in data:
            data[seed]["table"] += [r for r in high["table"] if r["sparsity"] != "full"]
            data[seed]["cores"].update(high["cores"])
            data[seed]["overlap"] += high["overlap"]
    return data


def _effective_size(d: dict, split: str) -> list[float]:
    """Per mask seed: 1 - the largest achieved sparsity within 1 rank of the full model."""
    full = next(r for r in d["table"] if r["sparsity"] == "full")
    out = []
    for seed in sorted({r["seed"] for r in d["table"] if r["seed"] is not None}):
        ok = [r["achieved"] for r in d["table"]
              if r["seed"] == seed and r[split] <= full[split] + 1.0]  # fmt: skip
        out.append(1.0 - max(ok, default=0.0))
    return out


def write_core(runs: Path, seeds: list[int]) -> str:
    rows, overlap, lists = [], [], []
    data = _merged(runs, seeds)
    if not data:
        return "(no core runs)"
    levels = sorted({r["sparsity"] for d in data.values() for r in d["table"]} - {"full"})
    for s in ["full", *levels]:
        sub = [r for d in data.values() for r in d["table"] if r["sparsity"] == s]
        rows.append({
            "sparsity": s,
            "achieved": _pm([r["achieved"] for r in sub]),
            "kept units": _pm([r["kept"] for r in sub], 1),
            "facts": _pm([r["facts"] for r in sub]),
            "implications": _pm([r["implications"] for r in sub]),
            "control": _pm([r["control"] for r in sub]),
            "OCR effect": _pm([r["ocr_effect"] for r in sub]),
            "keep OCR": f"{sum(r['keeps_ocr'] for r in sub)}/{len(sub)}",
            "core size": "" if s == "full" else " / ".join(
                str(len(d["cores"].get(str(s), []))) for d in data.values()
            ),
        })  # fmt: skip
    for s in levels:
        for role in ("informative", "upstream", "downstream"):
            sub = [r for d in data.values() for r in d["overlap"]
                   if r["sparsity"] == s and r["role"] == role]  # fmt: skip
            overlap.append({
                "sparsity": s,
                "role": role,
                "top-5 in core": " / ".join(str(r["top_in_core"]) for r in sub),
                "kept if OCR kept": _pm([r["kept_if_ocr"] for r in sub if r["n_ocr"]]),
                "kept if OCR lost": _pm([r["kept_if_no_ocr"] for r in sub if r["n_no_ocr"]]),
                "subnetworks keep / lose": f"{sum(r['n_ocr'] for r in sub)} / "
                f"{sum(r['n_no_ocr'] for r in sub)}",
            })  # fmt: skip
    eff = [{
        "effective size, facts": _pm([v for d in data.values()
                                      for v in _effective_size(d, "facts")]),
        "effective size, implications": _pm([v for d in data.values()
                                             for v in _effective_size(d, "implications")]),
        "per world seed (facts; implications)": " / ".join(
            f"{', '.join(f'{v:.2f}' for v in _effective_size(d, 'facts'))}; "
            f"{', '.join(f'{v:.2f}' for v in _effective_size(d, 'implications'))}"
            for d in data.values()),
    }]  # fmt: skip
    for seed, d in data.items():
        lists.append(f"- seed {seed}: OCR effect of the full model {d['ocr']['effect']:.2f}; "
                     f"core at 0.5: {', '.join(d['cores'].get('0.5', [])) or '(empty)'}; "
                     "top informative "
                     f"{', '.join(d['top']['informative'])}; top upstream "
                     f"{', '.join(d['top']['upstream'])}; top downstream "
                     f"{', '.join(d['top']['downstream'])}")  # fmt: skip
    walls = [d["wall_seconds"] for d in data.values()]
    high = [d["wall_seconds"] for d in _load(runs, "core_high", seeds).values()]
    return "\n\n".join([
        markdown_table(rows), markdown_table(overlap), markdown_table(eff), "\n".join(lists),
        f"wall time per seed: {', '.join(f'{w:.0f} s' for w in walls)} (core, with pretraining)"
        + (f"; {', '.join(f'{w:.0f} s' for w in high)} (core_high)" if high else ""),
    ])  # fmt: skip


def write_memo(runs: Path, seeds: list[int]) -> str:
    data = _load(runs, "memo", seeds)
    if not data:
        return "(no memo runs)"
    rows = []
    first = next(iter(data.values()))
    names = [n for n in first if n in ("first_hop", "zong")]
    for name in names:
        splits = [r["split"] for r in first[name]["table"] if r["phase"] == "before"]
        for split in splits:
            row: dict[str, Any] = {"dataset": name, "split": split}
            for phase in ("before", "after"):
                sub = [r for d in data.values() for r in d[name]["table"]
                       if r["phase"] == phase and r["split"] == split]  # fmt: skip
                if phase == "before":
                    row["mean C(x,y)"] = _pm([r["mean C(x,y)"] for r in sub], 1)
                row[f"log p {phase}"] = _pm([r["mean log p"] for r in sub])
                row[f"Spearman {phase}"] = " / ".join(
                    "nan" if r["spearman"] != r["spearman"] else f"{r['spearman']:.2f}" for r in sub
                )
                row[f"CI {phase}"] = (
                    " / ".join(r["spearman CI"] for r in sub) if split == "all" else ""
                )
            rows.append(row)
    ocr = [f"{n}: OCR effect " + " / ".join(f"{d[n]['ocr']['effect']:.2f}" for d in data.values())
           for n in names]  # fmt: skip
    walls = [d["wall_seconds"] for d in data.values()]
    return "\n\n".join(
        [
            markdown_table(rows),
            "; ".join(ocr),
            f"wall time per seed: {', '.join(f'{w:.0f} s' for w in walls)}",
        ]
    )


def write_dose(runs: Path, seeds: list[int]) -> str:
    data = _load(runs, "dose", seeds)
    if not data:
        return "(no dose runs)"
    rows = []
    for k in DOSES:
        for name in ("first_hop", "zong"):
            sub = [d["uniform"][str(k)][name] for d in data.values()]
            rows.append({
                "k": k, "dataset": name,
                "facts": _pm([r["final"]["facts"] for r in sub]),
                "implications": _pm([r["final"]["implications"] for r in sub]),
                "control": _pm([r["final"]["control_implications"] for r in sub]),
                "OCR effect": _pm([r["effect"] for r in sub]),
                "per seed": " / ".join(f"{r['effect']:.2f}" for r in sub),
            })  # fmt: skip
    graded = []
    for name in ("first_hop", "zong"):
        sub = [d["graded"][name] for d in data.values()]
        tab = [next(r for r in g["table"] if r["split"] == "known_implications") for g in sub]
        graded.append({
            "dataset": name,
            "Spearman (log p vs task-gram), known people": " / ".join(
                f"{r['spearman']:.2f} {r['spearman CI']}" for r in tab),
            "OCR effect (graded run)": " / ".join(f"{g['ocr']['effect']:.2f}" for g in sub),
        })  # fmt: skip
    walls = [d["wall_seconds"] for d in data.values()]
    return "\n\n".join(
        [
            markdown_table(rows),
            markdown_table(graded),
            f"wall time per seed: {', '.join(f'{w:.0f} s' for w in walls)}",
        ]
    )


def svg_bars(title: str, groups: list[str], series: dict[str, list[tuple[float, float]]]) -> str:
    """A small grouped bar chart (mean, sd per bar) as standalone SVG: no plotting dependency, so
    the committed figure regenerates anywhere."""
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2"]
    width, height, left, top, bottom = 640, 300, 50, 30, 50
    vmax = max(m + sd for bars in series.values() for m, sd in bars) * 1.1 or 1.0
    group_w = (width - left - 10) / len(groups)
    bar_w = group_w * 0.8 / len(series)
    y = lambda v: top + (height - top - bottom) * (1 - v / vmax)  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="black"/>',
    ]
    for tick in range(0, int(vmax) + 1, max(1, int(vmax) // 5)):
        out.append(f'<text x="{left - 5}" y="{y(tick) + 4}" text-anchor="end">{tick}</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * group_w + group_w * 0.1
        out.append(
            f'<text x="{x0 + group_w * 0.4}" y="{height - bottom + 15}" '
            f'text-anchor="middle">{g}</text>'
        )
        for si, bars in enumerate(series.values()):
            m, sd = bars[gi]
            x = x0 + si * bar_w
            out.append(
                f'<rect x="{x:.1f}" y="{y(max(m, 0)):.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{abs(y(0) - y(m)):.1f}" fill="{colors[si % 5]}"/>'
            )
            cx = x + bar_w * 0.45
            out.append(
                f'<line x1="{cx:.1f}" y1="{y(m - sd):.1f}" x2="{cx:.1f}" '
                f'y2="{y(m + sd):.1f}" stroke="black"/>'
            )
    for si, name in enumerate(series):
        lx = left + si * 150
        out.append(
            f'<rect x="{lx}" y="{height - 18}" width="10" height="10" '
            f'fill="{colors[si % 5]}"/><text x="{lx + 14}" y="{height - 9}">{name}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def write_figures(runs: Path, seeds: list[int], out: Path) -> None:
    """docs/figures/lenses_core.svg and lenses_dose.svg from the stored runs."""
    import statistics

    def ms(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out.mkdir(parents=True, exist_ok=True)
    core = _merged(runs, seeds)
    if core:
        levels = [
            "full",
            *sorted({r["sparsity"] for d in core.values() for r in d["table"]} - {"full"}),
        ]
        series = {
            name: [ms([r[key] for d in core.values() for r in d["table"] if r["sparsity"] == s])
                   for s in levels]
            for name, key in (("facts", "facts"), ("implications", "implications"),
                              ("control", "control"))
        }  # fmt: skip
        (out / "lenses_core.svg").write_text(svg_bars(
            "(a) zong: mean rank of subnetworks by target sparsity (mean, sd over runs)",
            [str(s) for s in levels], series))  # fmt: skip
    dose = _load(runs, "dose", seeds)
    if dose:
        series = {
            f"{name} OCR effect": [ms([d["uniform"][str(k)][name]["effect"]
                                       for d in dose.values()]) for k in DOSES]
            for name in ("first_hop", "zong")
        }  # fmt: skip
        (out / "lenses_dose.svg").write_text(svg_bars(
            "(c) OCR effect (control - implication rank) vs implication dose k",
            [f"k = {k}" for k in DOSES], series))  # fmt: skip


def write(runs: Path, seeds: list[int]) -> None:
    """Rewrite the generated blocks of docs/results_lenses.md (between ``<!-- BEGIN name -->``
    and ``<!-- END name -->``; the prose is written by hand) and the SVG figures."""
    import re

    doc = Path(__file__).parent / "results_lenses.md"
    text = doc.read_text()
    for name, fn in (("core", write_core), ("memo", write_memo), ("dose", write_dose)):
        block = f"<!-- BEGIN {name} -->\n{fn(runs, seeds)}\n<!-- END {name} -->"
        text = re.sub(
            f"<!-- BEGIN {name} -->.*?<!-- END {name} -->", lambda _, b=block: b, text, flags=re.S
        )
    doc.write_text(text)
    write_figures(runs, seeds, Path(__file__).parent / "figures")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stages", nargs="+", choices=["pretrain", *STAGES, "write"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", type=Path, default=Path("runs/lenses"))
    args = p.parse_args(argv)
    for stage in args.stages:
        if stage == "write":
            write(args.runs, args.seeds)
        else:
            run(stage, args.runs, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
