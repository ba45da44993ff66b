"""The ordering experiment in pretraining and the ablation check of the scores (issue #6, 4-5).

**Ordering** (:func:`ordering_experiment`). For every curriculum and seed: draw the world of that
seed, pretrain a fresh model on its corpus in the curriculum's order (:mod:`.pretrain`), then run
the library's OCR experiment unchanged (``verify_ocr``: Adam, constant lr, answer-token loss, block
linear weights) on the held-out entities' facts of each dataset (``first_hop``, ``second_hop``,
``zong``), and report the implication mean rank beside the deranged-pairing control (method §6).
Optionally the extractive scores of each finetune are computed on its implications. The same seed
gives the same world, corpus sampling and initialisation across curricula, so curricula are
compared paired.

**Ablation** (:func:`ablation_check`). In a model where OCR works: take the top-``k`` components of
a score (summed over items, at their best position), mean-ablate their outputs at those positions
in the finetuned model (the mean over the dataset's items of the component's output there), and
compare the OCR effect (control minus implication rank) with ablating ``k`` random components at
the same positions.

Command line (``python -m extractive_lens.worlds --help``)::

    python -m extractive_lens.worlds build-default    # the model of load_model("world-default")
    python -m extractive_lens.worlds ordering --out runs/worlds-ordering --seeds 0 1 2
    python -m extractive_lens.worlds scores --out runs/worlds-ordering   # scores and graphs
    python -m extractive_lens.worlds ablation --out runs/worlds-ablation  # on world-default
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from extractive_lens.components import Component
from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset
from extractive_lens.experiments.ocr import verify_ocr
from extractive_lens.metrics import ranks
from extractive_lens.worlds.curricula import CURRICULA, CorpusConfig
from extractive_lens.worlds.generator import World, WorldConfig, make_world
from extractive_lens.worlds.pretrain import ModelConfig, TrainConfig, pretrain

DATASETS = ("first_hop", "second_hop", "zong")
KNOWN_SPLIT = "known_implications"
PAPER_ORDERING = {"interleaved": 0.8, "facts_first": 1.3, "implications_first": 6.4}
"""The paper's held-out implication mean ranks (OLMo-7B, continued training on dax/zong; its
"joint" order is our ``interleaved``). Lower is better; chance 9.5."""


@dataclass(frozen=True)
class FinetuneSpec:
    """One OCR finetune recipe (Adam, constant lr, answer-token loss, batch 8)."""

    name: str
    lr: float = 1e-3
    epochs: int = 10
    paraphrases: bool = True
    """Also train the facts in the relation's other templates (``verify_ocr(paraphrases=True)``)."""
    layers: str | None = None
    """``None``: all block linear weights (the paper's protocol); ``"early"`` / ``"late"``: only
    the first / second half of the layers."""

    def trainable(self, n_layers: int) -> list[int] | None:
        half = n_layers // 2
        return {None: None, "early": list(range(half)), "late": list(range(half, n_layers))}[
            self.layers
        ]


@dataclass(frozen=True)
class OrderingConfig:
    """Everything the ordering experiment varies or fixes."""

    curricula: tuple[str, ...] = CURRICULA
    seeds: tuple[int, ...] = (0, 1, 2)
    world: WorldConfig = WorldConfig()
    """The world's shape; its seed is replaced by each run's seed."""
    repeats: int = 150
    paraphrases: bool = True
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    """Its seed is replaced by each run's seed."""
    datasets: tuple[str, ...] = DATASETS
    finetunes: tuple[FinetuneSpec, ...] = (
        FinetuneSpec("all"),
        FinetuneSpec("early", layers="early"),
        FinetuneSpec("late", layers="late"),
    )
    """OCR finetunes run on every pretrained model; the first is the headline protocol."""
    save_deltas: bool = True
    """With ``out_dir``: save the first finetune's delta per dataset (for scores later)."""
    scores: bool = False
    """Also compute extractive scores of every finetune (needs ``extractive_lens.scores``)."""
    score_counterfactuals: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_one(
    config: OrderingConfig,
    curriculum: str,
    seed: int,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """One pretraining run and its OCR finetunes; the row is also written to ``out_dir``."""
    run_dir = Path(out_dir) / f"{curriculum}-seed{seed}" if out_dir is not None else None
    if run_dir is not None and (run_dir / "result.json").exists():
        row = json.loads((run_dir / "result.json").read_text())
        if row.get("config") != _run_config(config):
            raise FileExistsError(f"{run_dir} holds a run of another configuration")
        return row
    world = make_world(replace(config.world, seed=seed))
    pre = pretrain(
        world,
        CorpusConfig(curriculum, config.paraphrases, config.repeats, seed=seed),
        config.model,
        replace(config.train, seed=seed),
        out_dir=None if run_dir is None else run_dir / "pretrain",
        progress=progress,
    )
    row: dict[str, Any] = {
        "curriculum": curriculum,
        "seed": seed,
        "n_params": pre.n_params,
        "pretrain_steps": pre.history[-1]["step"] if pre.history else 0,
        "pretrain_tokens": pre.history[-1]["tokens"] if pre.history else 0,
        "pretrain_seconds": pre.seconds,
        "pretrain_final": pre.final(),
        "config": _run_config(config),
        "datasets": {},
    }
    datasets = world.datasets()
    for name in config.datasets:
        row["datasets"][name] = {}
        for i, spec in enumerate(config.finetunes):
            save = run_dir / f"delta-{name}.safetensors" if run_dir and i == 0 else None
            row["datasets"][name][spec.name] = ocr_on(
                pre.model, datasets[name], spec, config, None if not config.save_deltas else save
            )
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "result.json").write_text(json.dumps(row, indent=1))
    return row


def _run_config(config: OrderingConfig) -> dict[str, Any]:
    """What determines one run's row (the config without the lists of seeds and curricula), as
    it reads back from JSON."""
    out = config.to_dict()
    del out["seeds"], out["curricula"]
    return json.loads(json.dumps(out))


def ocr_on(
    model: Any,
    dataset: OCRDataset,
    spec: FinetuneSpec,
    config: OrderingConfig,
    delta_path: Path | None = None,
) -> dict:
    """``verify_ocr`` with one finetune recipe, summarised (and scored if configured)."""
    result = verify_ocr(
        model,
        dataset,
        lr=spec.lr,
        epochs=spec.epochs,
        paraphrases=spec.paraphrases,
        trainable=spec.trainable(int(model.cfg.n_layers)),
        progress=False,
    )
    effect, se = result.ocr_effect()
    out = {
        "final": result.final(),
        "precheck": result.precheck,
        "effect": effect,
        "effect_se": se,
        "verdict": result.verdict(),
        "finetune_seconds": result.seconds,
        "chance": result.chance(),
    }
    if config.scores:
        start = time.perf_counter()
        out["scores"] = score_summary(
            model, result.delta, dataset, counterfactuals=config.score_counterfactuals
        )
        out["scores_seconds"] = time.perf_counter() - start
    if delta_path is not None:
        delta_path.parent.mkdir(parents=True, exist_ok=True)
        result.delta.save(delta_path, overwrite=True)
    return out


def score_summary(
    model: Any, delta: Any, dataset: OCRDataset, *, counterfactuals: int = 5, top: int = 5
) -> dict[str, Any]:
    """Extractive scores of a finetune on its implications, reduced to what a table needs.

    Per role: the mean total per item, per-layer MLP and attention totals (per item), and the
    extractive graph (``extractive_lens.graph.extractive_graph`` with ``top_k=top``) as a dict.
    """
    from extractive_lens.graph import extractive_graph
    from extractive_lens.scores import extractive_scores

    scores = extractive_scores(
        model,
        delta,
        dataset.implications,
        dataset.implication_options,
        counterfactuals=counterfactuals,
    )
    out: dict[str, Any] = {}
    for role, s in scores.roles().items():
        n = len(s.examples)
        totals = s.layer_totals()
        out[role] = {
            "total": float(s.total()) / n,
            "mlp_by_layer": [v / n for v in totals["mlp"].tolist()],
            "attn_by_layer": [v / n for v in totals["attn"].tolist()],
        }
    graph = extractive_graph(scores, top_k=top)
    out["graph"] = graph.to_dict()
    out["graph_summary"] = graph.summary(k=top)
    return out


def score_ordering(out_dir: str | Path, *, counterfactuals: int = 5, log: Any = print) -> dict:
    """Extractive scores and graphs of every finished run's headline finetune, after the fact.

    Reads each ``<curriculum>-seed<k>/`` of an :func:`ordering_experiment` directory (pretrained
    model and saved deltas), writes ``scores-<dataset>.json`` beside them and returns
    ``{(curriculum, dataset): [summary per seed]}`` (keys joined as ``"curriculum/dataset"``).
    """
    from extractive_lens.delta import WeightDelta
    from extractive_lens.models import load_model

    out: dict[str, list] = {}
    for run in sorted(Path(out_dir).glob("*-seed*")):
        row = json.loads((run / "result.json").read_text())
        model = load_model(run / "pretrain" / "model")
        world = make_world(
            WorldConfig(**json.loads((run / "pretrain" / "run.json").read_text())["world"])
        )
        datasets = world.datasets()
        for name in row["datasets"]:
            path = run / f"scores-{name}.json"
            if path.exists():
                summary = json.loads(path.read_text())
            else:
                start = time.perf_counter()
                delta = WeightDelta.load(run / f"delta-{name}.safetensors", model)
                summary = score_summary(
                    model, delta, datasets[name], counterfactuals=counterfactuals
                )
                summary["seconds"] = time.perf_counter() - start
                path.write_text(json.dumps(summary, indent=1))
                if log:
                    log(f"scored {run.name}/{name} in {summary['seconds']:.1f}s")
            out.setdefault(f"{row['curriculum']}/{name}", []).append(summary)
    return out


def _mean_lists(lists: list[list[float]]) -> list[float]:
    return [statistics.fmean(v) for v in zip(*lists, strict=True)]


def layer_profile_markdown(scored: dict[str, list]) -> str:
    """Per curriculum and dataset: each role's mean per-item score by layer (MLP / attention)."""
    lines = [
        "| curriculum / dataset | role | MLP by layer | attention by layer | total |",
        "|---|---|---|---|---|",
    ]
    for key, runs in scored.items():
        for role in ("upstream", "informative", "downstream"):
            mlp = _mean_lists([r[role]["mlp_by_layer"] for r in runs])
            attn = _mean_lists([r[role]["attn_by_layer"] for r in runs])
            total = statistics.fmean(r[role]["total"] for r in runs)
            lines.append(
                f"| {key} | {role} | {' '.join(f'{v:+.2f}' for v in mlp)} | "
                f"{' '.join(f'{v:+.2f}' for v in attn)} | {total:+.2f} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- aggregation


def _spread(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass
class OrderingResult:
    config: OrderingConfig
    rows: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0

    def table(self) -> list[dict[str, Any]]:
        """One row per (dataset, finetune, curriculum): mean and sd over seeds of every rank."""
        out = []
        for dataset in self.config.datasets:
            for spec in self.config.finetunes:
                for curriculum in self.config.curricula:
                    runs = [r for r in self.rows if r["curriculum"] == curriculum]
                    if runs:
                        d = [r["datasets"][dataset][spec.name] for r in runs]
                        out.append(_aggregate(dataset, spec.name, curriculum, d))
        return out

    def compute(self) -> dict[str, float]:
        """Seconds spent: pretraining, finetuning, scoring (summed over runs), and wall time."""
        runs = [d for r in self.rows for per in r["datasets"].values() for d in per.values()]
        return {
            "pretrain_seconds": sum(r["pretrain_seconds"] for r in self.rows),
            "finetune_seconds": sum(d["finetune_seconds"] for d in runs),
            "scores_seconds": sum(d.get("scores_seconds", 0.0) for d in runs),
            "runs": len(self.rows),
            "wall_seconds": self.seconds,
        }

    def markdown(self, finetunes: Sequence[str] | None = None) -> str:
        """The table as Markdown (mean ± sd over seeds; ranks among 20 options, chance 9.5)."""
        lines = [
            "| dataset | finetune | curriculum | seeds | fact | implication | control "
            "| control - impl. | latent two-hop (pretrained) | paper |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table():
            if finetunes is not None and r["finetune"] not in finetunes:
                continue
            paper = PAPER_ORDERING.get(r["curriculum"]) if r["dataset"] == "zong" else None
            lines.append(
                f"| {r['dataset']} | {r['finetune']} | {r['curriculum']} | {r['n_seeds']} | "
                f"{_pm(r, 'fact')} | {_pm(r, 'implication')} | {_pm(r, 'control')} | "
                f"{_pm(r, 'effect')} | {_pm(r, 'latent_pretrain')} | "
                f"{'' if paper is None else paper} |"
            )
        return "\n".join(lines)

    def figure(self, finetune: str | None = None) -> Any:
        """Grouped bars: implication and control rank per curriculum, one panel per dataset."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        finetune = finetune or self.config.finetunes[0].name
        table = [r for r in self.table() if r["finetune"] == finetune]
        fig = make_subplots(
            rows=1,
            cols=len(self.config.datasets),
            subplot_titles=list(self.config.datasets),
            shared_yaxes=True,
        )
        for col, dataset in enumerate(self.config.datasets, start=1):
            rows = [r for r in table if r["dataset"] == dataset]
            x = [r["curriculum"] for r in rows]
            for key, color in (("implication", "#1f77b4"), ("control", "#bbbbbb")):
                fig.add_trace(
                    go.Bar(
                        x=x,
                        y=[r[key] for r in rows],
                        name=key,
                        marker_color=color,
                        error_y={"type": "data", "array": [r[key + "_sd"] for r in rows]},
                        showlegend=col == 1,
                    ),
                    row=1,
                    col=col,
                )
            if dataset == "zong":
                fig.add_trace(
                    go.Scatter(
                        x=list(PAPER_ORDERING),
                        y=list(PAPER_ORDERING.values()),
                        mode="markers",
                        marker={"symbol": "x", "size": 10, "color": "red"},
                        name="paper (OLMo-7B, continued training)",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_layout(
            barmode="group",
            height=420,
            title=f"OCR after pretraining under each curriculum ({finetune} finetune; mean rank "
            "± sd over seeds, lower is better, chance 9.5)",
        )
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "rows": self.rows,
            "table": self.table(),
            "compute": self.compute(),
        }


def _aggregate(dataset: str, finetune: str, curriculum: str, d: list[dict]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": dataset,
        "finetune": finetune,
        "curriculum": curriculum,
        "n_seeds": len(d),
    }
    for key, values in {
        "fact": [x["final"][FACTS] for x in d],
        "implication": [x["final"][IMPLICATIONS] for x in d],
        "control": [x["final"][CONTROL] for x in d],
        "effect": [x["effect"] for x in d],
        "latent_pretrain": [x["precheck"].get("known_latent_implications", math.nan) for x in d],
        "known_impl_pretrain": [x["precheck"].get("known_implications", math.nan) for x in d],
    }.items():
        row[key], row[key + "_sd"] = _spread(values)
    row["per_seed_implication"] = [x["final"][IMPLICATIONS] for x in d]
    row["per_seed_control"] = [x["final"][CONTROL] for x in d]
    row["chance"] = d[0]["chance"]
    return row


def _pm(row: dict[str, Any], key: str) -> str:
    m, s = row[key], row[key + "_sd"]
    if math.isnan(m):
        return "-"
    return f"{m:.2f}" if math.isnan(s) else f"{m:.2f} ± {s:.2f}"


def ordering_experiment(
    config: OrderingConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Any = print,
) -> OrderingResult:
    """Run every (curriculum, seed) and aggregate; finished runs in ``out_dir`` are reused."""
    config = config or OrderingConfig()
    start = time.perf_counter()
    rows = []
    for seed in config.seeds:
        for curriculum in config.curricula:
            t = time.perf_counter()
            row = run_one(config, curriculum, seed, out_dir, progress=progress)
            rows.append(row)
            if log:
                summary = ", ".join(
                    f"{k}/{f}: impl {v['final'][IMPLICATIONS]:.2f} ctrl {v['final'][CONTROL]:.2f}"
                    for k, per in row["datasets"].items()
                    for f, v in per.items()
                )
                log(f"[{curriculum} seed {seed}] {time.perf_counter() - t:.0f}s  {summary}")
    result = OrderingResult(config, rows, time.perf_counter() - start)
    if out_dir is not None:
        out = Path(out_dir)
        (out / "ordering.json").write_text(json.dumps(result.to_dict(), indent=1))
        (out / "ordering.md").write_text(result.markdown() + "\n")
        result.figure().write_html(out / "ordering.html", include_plotlyjs="cdn")
    return result


# --------------------------------------------------------------------------- ablation


def _item_positions(model: Any, dataset: OCRDataset) -> int:
    from extractive_lens.metrics import encode

    batch = encode(model.tokenizer, dataset.implications, with_answers=False)
    lengths = set(batch.attention_mask.sum(1).tolist())
    if len(lengths) != 1:
        raise ValueError("ablation needs token-aligned items (all prompts of one length)")
    return lengths.pop()


def _mean_outputs(model: Any, dataset: OCRDataset, nodes: Sequence[tuple[Component, int]]):
    """Mean over the implication items of each node's output (hook value) at its position."""
    from extractive_lens.metrics import encode

    batch = encode(model.tokenizer, dataset.implications, with_answers=False)
    _, cache = model.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask)
    out = {}
    for c, pos in nodes:
        act = cache[c.output_hook][:, pos]
        out[(c, pos)] = (act[:, c.head] if c.kind != "mlp" else act).mean(0)
    return out


def ablated_ranks(
    model: Any, dataset: OCRDataset, nodes: Sequence[tuple[Component, int]], means: dict
) -> dict[str, float]:
    """Mean ranks of the implications, the control and (specificity check) the known entities'
    implications (``known_implications``, pretrained knowledge) with ``nodes`` mean-ablated."""
    hooks = []
    for c, pos in nodes:
        value = means[(c, pos)]

        def fn(act, hook, c=c, pos=pos, value=value):
            act = act.clone()
            if c.kind == "mlp":
                act[:, pos] = value
            else:
                act[:, pos, c.head] = value
            return act

        hooks.append((c.output_hook, fn))
    out = {}
    with model.hooks(fwd_hooks=hooks):
        for split in (IMPLICATIONS, CONTROL, KNOWN_SPLIT):
            if split not in dataset.splits():
                continue
            examples = dataset.splits()[split]
            out[split] = ranks(model, examples, dataset.options_for(split)).float().mean().item()
    out["effect"] = out[CONTROL] - out[IMPLICATIONS]
    return out


def ablation_check(
    model: Any,
    dataset: OCRDataset,
    *,
    finetune: FinetuneSpec | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    n_random: int = 20,
    counterfactuals: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Do the nodes the scores single out carry the OCR effect? (issue #6, item 5).

    Finetunes on ``dataset``'s facts with ``finetune`` (default: the headline recipe, all block
    linear weights, lr 1e-3, 10 epochs, paraphrased facts), scores the finetune on the
    implications (all three scores, ``counterfactuals`` samples per item), then in the finetuned
    model mean-ablates the top-``k`` (component, position) nodes of each score (ranked by the
    mean score over items) and, as the baseline, ``k`` random components at the same positions
    (``n_random`` draws). Mean-ablation replaces a component's output (``hook_mlp_out`` or the
    head's ``hook_z``) at that position by its mean over the dataset's implication items under
    the finetuned weights, which removes exactly the item-specific information. Reports the
    implication and control ranks and the OCR effect (control minus implication) for each.
    """
    from extractive_lens.components import components
    from extractive_lens.scores import extractive_scores

    start = time.perf_counter()
    spec = finetune or FinetuneSpec("all")
    n_pos = _item_positions(model, dataset)
    result = verify_ocr(
        model,
        dataset,
        lr=spec.lr,
        epochs=spec.epochs,
        paraphrases=spec.paraphrases,
        trainable=spec.trainable(int(model.cfg.n_layers)),
        progress=False,
    )
    scores = extractive_scores(
        model,
        result.delta,
        dataset.implications,
        dataset.implication_options,
        counterfactuals=counterfactuals,
    )
    labels = _position_labels(scores.informative.tokens, n_pos)
    every = [c for c in components(model) if c.kind in ("mlp", "head")]
    rng = random.Random(seed)
    out: dict[str, Any] = {
        "dataset": dataset.name,
        "finetune": asdict(spec),
        "ocr": result.final(),
        "effect": result.ocr_effect()[0],
        "positions": labels,
        "rows": [],
    }
    with result.delta.applied(model):
        out["unablated"] = ablated_ranks(model, dataset, [], {})
        for role, s in scores.roles().items():
            nodes = [
                (c, pos, float(v))
                for c in every
                for pos, v in enumerate(s.component(c).mean(0)[:n_pos].tolist())
            ]
            ranked = sorted(nodes, key=lambda e: e[2], reverse=True)
            for k in ks:
                top = [(c, pos) for c, pos, _ in ranked[:k]]
                positions = [pos for _, pos in top]
                draws = [
                    list(zip(rng.sample(every, k), positions, strict=True)) for _ in range(n_random)
                ]
                means = _mean_outputs(model, dataset, top + [n for d in draws for n in d])
                chosen = ablated_ranks(model, dataset, top, means)
                random_runs = [ablated_ranks(model, dataset, d, means) for d in draws]
                random_effects = [r["effect"] for r in random_runs]
                out["rows"].append(
                    {
                        "role": role,
                        "k": k,
                        "nodes": [f"{c}@{labels[p]}" for c, p in top],
                        "scores": [v for _, _, v in ranked[:k]],
                        "implication": chosen[IMPLICATIONS],
                        "control": chosen[CONTROL],
                        "effect": chosen["effect"],
                        "random_effect": statistics.fmean(random_effects),
                        "random_effect_sd": statistics.stdev(random_effects)
                        if n_random > 1
                        else 0.0,
                        "random_effects": random_effects,
                        "known": chosen.get(KNOWN_SPLIT, math.nan),
                        "random_known": statistics.fmean(
                            r.get(KNOWN_SPLIT, math.nan) for r in random_runs
                        ),
                    }
                )
    out["reverted"] = _revert_check(
        model, dataset, result.delta, scores.informative, every, ks, n_random, rng
    )
    out["seconds"] = time.perf_counter() - start
    return out


def _revert_check(model, dataset, delta, informative, every, ks, n_random, rng) -> list[dict]:
    """Informative score's own counterfactual: revert the finetune on the top-k components.

    Components are ranked by their informative score summed over positions (mean over items);
    the finetuned model keeps the delta everywhere except on them. Baseline: k random ones.
    """
    total = {c: float(informative.component(c).sum(1).mean()) for c in every}
    ranked = sorted(every, key=lambda c: total[c], reverse=True)

    def effect_without(chosen: Sequence[Component]) -> dict[str, float]:
        kept = delta - delta.restrict(components=list(chosen), model=model)
        with kept.applied(model):
            return ablated_ranks(model, dataset, [], {})

    rows = []
    for k in ks:
        top = ranked[:k]
        chosen = effect_without(top)
        randoms = [effect_without(rng.sample(every, k)) for _ in range(n_random)]
        effects = [r["effect"] for r in randoms]
        rows.append(
            {
                "k": k,
                "components": [str(c) for c in top],
                "scores": [total[c] for c in top],
                "implication": chosen[IMPLICATIONS],
                "control": chosen[CONTROL],
                "effect": chosen["effect"],
                "known": chosen.get(KNOWN_SPLIT, math.nan),
                "random_effect": statistics.fmean(effects),
                "random_effect_sd": statistics.stdev(effects) if n_random > 1 else 0.0,
            }
        )
    return rows


def _position_labels(tokens: Sequence[Sequence[str]], n_pos: int) -> list[str]:
    """Token of each position, or ``<entity>`` where the items differ."""
    out = []
    for p in range(n_pos):
        seen = {t[p] for t in tokens}
        out.append(f"{seen.pop() if len(seen) == 1 else '<entity>'}({p})")
    return out


def ablation_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']} ({result['finetune']['name']} finetune): unablated implication "
        f"{result['unablated'][IMPLICATIONS]:.2f}, control {result['unablated'][CONTROL]:.2f}, "
        f"effect {result['unablated']['effect']:.2f}, known entities' implications "
        f"{result['unablated'].get(KNOWN_SPLIT, math.nan):.2f}",
        "",
        "| role | k | ablated nodes | implication | control | effect | random k: effect "
        "| known impl. | random k: known impl. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['role']} | {r['k']} | {', '.join(r['nodes'])} | {r['implication']:.2f} | "
            f"{r['control']:.2f} | {r['effect']:.2f} | "
            f"{r['random_effect']:.2f} ± {r['random_effect_sd']:.2f} | {r['known']:.2f} | "
            f"{r['random_known']:.2f} |"
        )
    if result.get("reverted"):
        lines += [
            "",
            "Informative components, finetune reverted on them (weights, not activations):",
            "",
            "| k | components | implication | control | effect | random k: effect |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["reverted"]:
            lines.append(
                f"| {r['k']} | {', '.join(r['components'])} | {r['implication']:.2f} | "
                f"{r['control']:.2f} | {r['effect']:.2f} | "
                f"{r['random_effect']:.2f} ± {r['random_effect_sd']:.2f} |"
            )
    return "\n".join(lines)


def default_world() -> World:
    return make_world(WorldConfig())


__all__ = [
    "DATASETS",
    "PAPER_ORDERING",
    "FinetuneSpec",
    "OrderingConfig",
    "OrderingResult",
    "ablated_ranks",
    "ablation_check",
    "ablation_markdown",
    "layer_profile_markdown",
    "ordering_experiment",
    "score_ordering",
    "run_one",
    "score_summary",
]
