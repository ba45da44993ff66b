"""The ablation check: do the nodes the extractive scores single out carry the OCR effect?

In a model where OCR works (:func:`ablation_check`): take the top-``k`` components of a score
(summed over items, at their best position), mean-ablate their outputs at those positions in the
finetuned model (the mean over the dataset's items of the component's output there), and compare
the OCR effect (control minus implication rank) with ablating ``k`` random components at the same
positions. The informative score is also checked by its own counterfactual: revert the finetune
on its top-``k`` components (weights, not activations).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from extractive_lens.components import Component
from extractive_lens.data import CONTROL, IMPLICATIONS, OCRDataset
from extractive_lens.hooking import hooked_run
from extractive_lens.metrics import ranks
from extractive_lens.worlds.finetunes import FinetuneSpec, finetune_ocr
from extractive_lens.worlds.scoring import implication_scores

KNOWN_SPLIT = "known_implications"
"""The known entities' implications (pretrained knowledge): the ablation's specificity check."""


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
    hooks = {c.output_hook for c, _ in nodes}
    with torch.no_grad(), hooked_run(model, keep=hooks) as capture:
        model(batch.input_ids, attention_mask=batch.attention_mask)
    out = {}
    for c, pos in nodes:
        act = capture.values[c.output_hook][:, pos]
        out[(c, pos)] = (act[:, c.head] if c.kind != "mlp" else act).mean(0)
    return out


def ablated_ranks(
    model: Any, dataset: OCRDataset, nodes: Sequence[tuple[Component, int]], means: dict
) -> dict[str, float]:
    """Mean ranks of the implications, the control and (specificity check) the known entities'
    implications (``known_implications``, pretrained knowledge) with ``nodes`` mean-ablated."""
    at: dict[str, list] = {}  # hook -> the nodes it carries (several heads share one hook)
    for c, pos in nodes:
        at.setdefault(c.output_hook, []).append((c, pos, means[(c, pos)]))

    def mean_ablated(cells):  # noqa: ANN001, ANN202
        def fn(act):  # noqa: ANN001, ANN202
            act = act.clone()
            for c, pos, value in cells:
                if c.kind == "mlp":
                    act[:, pos] = value
                else:
                    act[:, pos, c.head] = value
            return act

        return fn

    out = {}
    with hooked_run(model, edit={h: mean_ablated(cells) for h, cells in at.items()}):
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

    start = time.perf_counter()
    spec = finetune or FinetuneSpec("all")
    n_pos = _item_positions(model, dataset)
    result = finetune_ocr(model, dataset, spec)
    scores = implication_scores(model, result.delta, dataset, counterfactuals)
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
            ranked = _ranked_nodes(s, every, n_pos)
            for k in ks:
                row = _ablate_top_k(model, dataset, ranked, k, every, n_random, rng, labels)
                out["rows"].append({"role": role, "k": k, **row})
    out["reverted"] = _revert_check(
        model, dataset, result.delta, scores.informative, every, ks, n_random, rng
    )
    out["seconds"] = time.perf_counter() - start
    return out


def _ranked_nodes(
    score: Any, every: Sequence[Component], n_pos: int
) -> list[tuple[Component, int, float]]:
    """Every (component, position) node with its mean score over items, highest first."""
    nodes = [
        (c, pos, float(v))
        for c in every
        for pos, v in enumerate(score.component(c).mean(0)[:n_pos].tolist())
    ]
    return sorted(nodes, key=lambda e: e[2], reverse=True)


def _ablate_top_k(
    model: Any,
    dataset: OCRDataset,
    ranked: list[tuple[Component, int, float]],
    k: int,
    every: Sequence[Component],
    n_random: int,
    rng: random.Random,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Mean-ablate the top-``k`` nodes, and ``n_random`` draws of ``k`` random components at the
    same positions; the ranks and effects of both (``labels``: each position's token)."""
    top = [(c, pos) for c, pos, _ in ranked[:k]]
    positions = [pos for _, pos in top]
    draws = [list(zip(rng.sample(every, k), positions, strict=True)) for _ in range(n_random)]
    means = _mean_outputs(model, dataset, top + [n for d in draws for n in d])
    chosen = ablated_ranks(model, dataset, top, means)
    random_runs = [ablated_ranks(model, dataset, d, means) for d in draws]
    random_effects = [r["effect"] for r in random_runs]
    return {
        "nodes": [f"{c}@{labels[p]}" for c, p in top],
        "scores": [v for _, _, v in ranked[:k]],
        "implication": chosen[IMPLICATIONS],
        "control": chosen[CONTROL],
        "effect": chosen["effect"],
        "random_effect": statistics.fmean(random_effects),
        "random_effect_sd": statistics.stdev(random_effects) if n_random > 1 else 0.0,
        "random_effects": random_effects,
        "known": chosen.get(KNOWN_SPLIT, math.nan),
        "random_known": statistics.fmean(r.get(KNOWN_SPLIT, math.nan) for r in random_runs),
    }


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
