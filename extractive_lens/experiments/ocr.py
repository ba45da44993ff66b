"""Experiment 1 (docs/method.md §5.1): does out-of-context reasoning happen?

Finetune on a dataset's facts, track the mean rank of the facts, their implications and the
deranged-pairing control (docs/method.md §6) after every epoch, and judge OCR against the control.

>>> from extractive_lens import tiny_model, first_hop, verify_ocr
>>> result = verify_ocr(tiny_model(), first_hop(), lr=3e-3, epochs=2, progress=False)
>>> [row["epoch"] for row in result.table()]
[0, 1, 2]
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset, control_split
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.common import resolve_dataset, split_ranks
from extractive_lens.experiments.protocol import ResultMixin, read_results
from extractive_lens.experiments.settings import OCRConfig
from extractive_lens.metrics import ranks
from extractive_lens.models import model_identity
from extractive_lens.results import check_output_dir, prepare_output_dir, provenance, write_json
from extractive_lens.training import finetune

#: Splits tracked through training, in table order.
TRACKED = (FACTS, IMPLICATIONS, CONTROL)


@dataclass(frozen=True)
class OCRResult(ResultMixin):
    """What ``verify_ocr`` measured.

    Attributes:
        dataset: the dataset's name.
        model: the model's identity (``model_identity``).
        config: the training configuration (lr, epochs, batch size, seed, trainable, ...).
        history: one row per epoch (0 = before training): loss and the mean rank of each tracked
            split (``facts``, ``implications``, ``control_implications`` when present).
        precheck: mean ranks before training on the capability splits (names starting with
            ``known``): can the model do the two-hop on entities it already knows?
        final_ranks: per-item ranks after training, for each tracked split.
        n_options: number of options per split (chance mean rank is ``(n - 1) / 2``).
        delta: the finetuned weight delta.
        seconds: wall time of the whole experiment.
        precheck_sizes: ``(n_items, n_options)`` of each pre-check split (for ``capability``).
        control: the control split's description (which pairing it uses), or why there is none.
    """

    dataset: str
    model: dict[str, Any]
    config: dict[str, Any]
    history: tuple[dict[str, float], ...]
    precheck: dict[str, float]
    final_ranks: dict[str, list[int]]
    n_options: dict[str, int]
    delta: WeightDelta = field(repr=False)
    seconds: float = 0.0
    precheck_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    control: str = ""

    def table(self) -> list[dict[str, float]]:
        """The per-epoch rows (epoch, loss, mean rank per tracked split)."""
        return [dict(row) for row in self.history]

    def final(self) -> dict[str, float]:
        """Mean rank per tracked split after training."""
        return {k: sum(v) / len(v) for k, v in self.final_ranks.items()}

    def chance(self, split: str = IMPLICATIONS) -> float:
        return (self.n_options[split] - 1) / 2

    def ocr_effect(self) -> tuple[float, float]:
        """Control rank minus implication rank (paired by item), and its standard error."""
        impl, ctrl = self.final_ranks.get(IMPLICATIONS), self.final_ranks.get(CONTROL)
        if not impl or not ctrl or len(impl) != len(ctrl):
            return math.nan, math.nan
        diffs = torch.tensor(ctrl, dtype=torch.float64) - torch.tensor(impl, dtype=torch.float64)
        se = diffs.std().item() / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
        return diffs.mean().item(), se

    def verdict(self) -> str:
        """One sentence: did OCR happen, judged against the deranged-pairing control?"""
        final = self.final()
        effect, se = self.ocr_effect()
        facts = final.get(FACTS, math.nan)
        head = (
            f"{self.dataset}: facts {facts:.2f}, "
            f"implications {final.get(IMPLICATIONS, math.nan):.2f}"
            f", control {final.get(CONTROL, math.nan):.2f} (chance {self.chance():.1f})"
        )
        if facts > 1.0:
            return head + " - the facts were not learned, so OCR cannot be judged."
        if math.isnan(effect):
            return head + f" - no control split ({self.control}), so OCR cannot be judged."
        against = f" (control: {self.control_name()})" if self.control else ""
        if effect > 2 * se:
            return head + (
                f" - OCR: implications rank {effect:.1f} ± {se:.1f} better than the control "
                f"(significant at 2 SE){against}."
            )
        if effect > 0:
            return head + (
                f" - no significant OCR: implications rank {effect:.1f} ± {se:.1f} better than "
                f"the control, not significant at 2 SE{against}."
            )
        return (
            head
            + (
                f" - no OCR: implications rank {-effect:.1f} ± {se:.1f} worse than the control"
                if effect < 0
                else " - no OCR: implications rank the same as the control"
            )
            + f"{against}."
        )

    def control_name(self) -> str:
        """The control's short name, e.g. ``deranged-pairing control``, from its description
        (``"control"`` when the result does not record which)."""
        for name in ("deranged-pairing control", "grouped-pairing control"):
            if name in self.control:
                return name
        return self.control or "control"

    def capability(self) -> str:
        """The capability pre-check in plain words: can the model do the two-hop at all?

        ``known_implications`` (the implication template on entities the model knows) within two
        chance standard errors of chance means it cannot: OCR on new facts is then not expected.
        """
        parts = []
        for name, what in (("known_implications", "the two-hop"), ("known_hop", "the base hop")):
            if name not in self.precheck:
                continue
            rank = self.precheck[name]
            n_items, n_options = self.precheck_sizes.get(name, (20, self.n_options[IMPLICATIONS]))
            chance = (n_options - 1) / 2
            se = math.sqrt((n_options**2 - 1) / 12 / max(n_items, 1))
            numbers = f"{name} {rank:.2f}, chance {chance:.1f}"
            if rank >= chance - 2 * se:
                verdict = f"CANNOT do {what} on entities it already knows ({numbers})"
                if name == "known_implications":
                    verdict += ", so OCR on new facts is not expected"
            elif rank > chance / 2:
                verdict = f"does {what} on known entities only weakly ({numbers})"
            else:
                verdict = f"does {what} on known entities ({numbers})"
            parts.append(verdict)
        if not parts:
            return f"{self.dataset}: no capability pre-check (the dataset has no known* splits)."
        return f"{self.dataset} pre-check: the model " + "; it ".join(parts) + "."

    def summary(self) -> dict[str, float]:
        """Flat metrics for sweeps: final mean rank per split, ``ocr_effect`` (and ``_se``) and
        ``precheck/<split>``."""
        out = dict(self.final())
        out["ocr_effect"], out["ocr_effect_se"] = self.ocr_effect()
        out.update({f"precheck/{k}": v for k, v in self.precheck.items()})
        return out

    def seed_rows(self) -> list[dict[str, Any]]:
        """What a sweep averages over seeds: the final row (facts / implications / control)."""
        effect, se = self.ocr_effect()
        return [
            {"dataset": self.dataset, **self.final(), "ocr effect": effect, "ocr effect se": se}
        ]

    def figure(self) -> Any:
        """Mean rank of each tracked split after every epoch, with the chance line."""
        from extractive_lens.experiments.figures import curves_figure

        panel = {
            split: ([r["epoch"] for r in self.history], [r.get(split) for r in self.history])
            for split in self.final_ranks
        }
        return curves_figure(
            {self.dataset: panel},
            hlines={self.dataset: self.chance()},
            cols=1,
            title=f"OCR on {self.model.get('name')}",
        )

    @classmethod
    def load(cls, out_dir: str | Path) -> OCRResult:
        """The result saved in ``out_dir``, with its delta when ``delta.safetensors`` is there."""
        path = Path(out_dir) / "delta.safetensors"
        delta = WeightDelta.load(path) if path.is_file() else WeightDelta({})
        return dataclasses.replace(cls.from_dict(read_results(out_dir)), delta=delta)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OCRResult:
        """The result ``to_dict`` described, with an empty delta (``save`` writes the delta to
        its own file: ``load`` reads both)."""
        sizes = {k: tuple(v) for k, v in data.get("precheck_sizes", {}).items()}
        return super().from_dict({**data, "precheck_sizes": sizes, "delta": WeightDelta({})})

    def save(self, out_dir: str | Path, overwrite: bool = False, save_delta: bool = True) -> Path:
        """Write ``results.json`` and (with ``save_delta``) ``delta.safetensors`` into a new
        directory."""
        out = prepare_output_dir(out_dir, overwrite)
        if save_delta:
            self.delta.save(out / "delta.safetensors")
        write_json(out / "results.json", self.to_dict())
        return out

    def to_dict(self) -> dict[str, Any]:
        effect, se = self.ocr_effect()
        return {
            "experiment": "ocr",
            "dataset": self.dataset,
            "model": self.model,
            "config": self.config,
            "history": self.table(),
            "precheck": self.precheck,
            "final": self.final(),
            "final_ranks": self.final_ranks,
            "n_options": self.n_options,
            "ocr_effect": {"control_minus_implication": effect, "standard_error": se},
            "verdict": self.verdict(),
            "capability": self.capability(),
            "control": self.control,
            "precheck_sizes": {k: list(v) for k, v in self.precheck_sizes.items()},
            "seconds": self.seconds,
            "provenance": provenance(),
        }


def verify_ocr(
    model: TransformerBridge,
    dataset: OCRDataset,
    *,
    config: OCRConfig | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> OCRResult:
    """Finetune ``model`` on ``dataset.facts`` and measure OCR on its implications.

    The settings are ``config`` (default :class:`OCRConfig`), any of its fields overridden by
    keyword, e.g. ``verify_ocr(model, ds, lr=3e-4, epochs=2)``. The model's weights are
    unchanged afterwards; the finetuned weights are ``result.delta``. ``paraphrases=True`` also
    trains the facts in every template of ``dataset.fact_paraphrases``.

    Before any training, the dataset is validated for the model's tokenizer (errors name the
    split), a ``control_implications`` split is generated if it has none (``data.with_control``),
    and ``out`` (if given) is checked: an existing non-empty directory is refused unless
    ``overwrite=True``. With ``out`` the result is saved there at the end (``OCRResult.save``).

    Raises:
        DivergedError: (a ``FloatingPointError``) training diverged: NaN loss or collapsed logits.
    """
    start = time.perf_counter()
    c = OCRConfig.build(config, overrides, "verify_ocr")
    if out is not None:
        check_output_dir(out, overwrite)
    if not isinstance(dataset, OCRDataset):
        raise TypeError(f"verify_ocr needs an OCRDataset, not {type(dataset).__name__}")
    dataset = resolve_dataset(dataset, tokenizer=model.tokenizer)
    splits = dataset.splits()
    tracked = {
        name: (splits[name], dataset.options_for(name)) for name in TRACKED if name in splits
    }
    precheck = _precheck(model, dataset)
    train = dataset.facts + (dataset.paraphrased_facts() if c.paraphrases else ())
    run = finetune(
        model, train, trainable=c.trainable, eval_sets=tracked, progress=progress, **c.recipe()
    )
    final_ranks = split_ranks(
        model, dataset, tracked, delta=run.delta, batch_size=c.eval_batch_size
    )
    result = OCRResult(
        dataset=dataset.name,
        model=model_identity(model),
        config=_record(c, dataset, len(train)),
        history=tuple(_rename(row) for row in run.history),
        precheck={name: mean_rank for name, (mean_rank, _) in precheck.items()},
        final_ranks=final_ranks,
        n_options={name: len(opts) for name, (_, opts) in tracked.items()},
        delta=run.delta,
        seconds=time.perf_counter() - start,
        precheck_sizes={name: size for name, (_, size) in precheck.items()},
        control=_control_description(dataset),
    )
    if out is not None:
        result.save(out, overwrite=overwrite)
    return result


def _precheck(
    model: TransformerBridge, dataset: OCRDataset
) -> dict[str, tuple[float, tuple[int, int]]]:
    """Before training, each capability split (``known*``): its mean rank and its
    ``(n_items, n_options)``: can the model do the two-hop on entities it already knows?"""
    out = {}
    for name, examples in dataset.splits().items():
        if name.startswith("known"):
            options = dataset.options_for(name)
            mean_rank = ranks(model, examples, options).float().mean().item()
            out[name] = (mean_rank, (len(examples), len(options)))
    return out


def _record(c: OCRConfig, dataset: OCRDataset, n_train: int) -> dict[str, Any]:
    """The configuration an ``OCRResult`` records."""
    return {
        **c.training(),
        "dataset_seed": dataset.seed,
        "trainable": _describe(c.trainable),
        "paraphrases": c.paraphrases,
        "n_train": n_train,
    }


def _control_description(dataset: OCRDataset) -> str:
    if CONTROL in dataset.splits():
        return dataset.split(CONTROL).description
    try:
        control_split(dataset.implications, dataset.implication_options)
    except ValueError as err:
        return str(err)
    return "no control split"


def _rename(row: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("rank/"): v for k, v in row.items()}


def _describe(trainable: Any) -> Any:
    if trainable is None:
        return "block linear weights"
    return [str(t) for t in trainable]
