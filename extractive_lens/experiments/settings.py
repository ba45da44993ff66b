"""Each experiment's settings: one frozen dataclass per experiment, the only home of its defaults.

The experiment functions (``verify_ocr(model, ds, lr=3e-4)`` or ``config=OCRConfig(...)``), the
registry (``EXPERIMENTS[name].defaults``), the ``run`` command and sweeps all read their defaults
from these classes. Every field's ``metadata["doc"]`` says what it is, its unit and why its
default; ``describe()`` lists them (for ``--help`` / ``--list``).

>>> OCRConfig().lr, OCRConfig.registry_defaults()["dataset"]
(0.0001, 'first_hop')
>>> OCRConfig.build(None, {"lr": 3e-4}, "verify_ocr").lr
0.0003

A field with ``metadata["registry"] = False`` (the evaluation batch size, what to train) is a
keyword of the function only: it does not change what is measured, or is not JSON-able, so it is
no configuration key of the registry, and a sweep's run keys stay what they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self


def _doc(text: str, registry: bool = True, **kwargs: Any) -> Any:
    """A dataclass field with its documentation (``metadata["doc"]``)."""
    return field(metadata={"doc": text, "registry": registry}, **kwargs)


class Settings:
    """What every experiment configuration can do: build from keywords, list its fields."""

    @classmethod
    def build(cls, config: Self | None, overrides: Mapping[str, Any], caller: str) -> Self:
        """``config`` (default: all defaults) with the keyword ``overrides`` replaced.

        Raises ``TypeError`` naming the unknown keywords and the allowed ones, like a misspelt
        keyword argument does.
        """
        base = cls() if config is None else config
        if not isinstance(base, cls):
            raise TypeError(f"{caller}: config must be a {cls.__name__}, not {type(base).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(
                f"{caller}() got unexpected keyword arguments {unknown}; allowed: {names}"
            )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def registry_defaults(cls) -> dict[str, Any]:
        """The registry's configuration keys and defaults (JSON-able: tuples become lists)."""
        return {
            f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(cls)
            if f.metadata.get("registry", True)
        }

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """``(name, default, doc)`` of every field, in order (for ``--help`` and ``--list``)."""
        return [(f.name, f.default, f.metadata.get("doc", "")) for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class TrainConfig(Settings):
    """The finetuning recipe and data draw every training experiment shares (docs/method.md §5)."""

    lr: float = _doc(
        "Adam's constant learning rate. With 8 epochs it brings SmolLM2-135M's first-hop fact "
        "rank to 0.00 (docs/results.md; the paper's 3e-6 is for OLMo-7B).",
        default=1e-4,
    )
    epochs: int = _doc("passes over the training examples (the paper: 8).", default=8)
    batch_size: int = _doc("examples per optimizer step (the paper: 8).", default=8)
    seed: int = _doc("seeds the shuffling; the same seed gives a bit-identical delta.", default=0)
    data_seed: int = _doc(
        "seed of a built-in dataset's random draw (names, cities); any fixed value, 0 by "
        "convention.",
        default=0,
    )
    eval_batch_size: int = _doc(
        "items per forward pass when ranking (memory against speed; 32 keeps a 135M model's "
        "activations small).",
        registry=False,
        default=32,
    )

    def training(self) -> dict[str, Any]:
        """The training recipe a result records: lr, epochs, batch_size, seed."""
        return {
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def recipe(self) -> dict[str, Any]:
        """The keywords of ``training.finetune`` this configuration sets."""
        return {**self.training(), "eval_batch_size": self.eval_batch_size}


@dataclass(frozen=True)
class OCRConfig(TrainConfig):
    """``verify_ocr`` (docs/method.md §5.1): finetune on facts, measure their implications."""

    dataset: str = _doc(
        "built-in dataset name or JSONL path (registry / CLI).", default="first_hop"
    )
    paraphrases: bool = _doc(
        "also train every fact in the dataset's paraphrase templates (off: the facts in their one "
        "template, the plain experiment).",
        default=False,
    )
    trainable: Any = _doc(
        "what to train (``training.finetune``); None: every block linear weight, as the paper.",
        registry=False,
        default=None,
    )


@dataclass(frozen=True)
class FreezingConfig(TrainConfig):
    """``layer_freezing`` (docs/method.md §5.3): where must the weight change happen?"""

    datasets: tuple[str, ...] = _doc(
        "the datasets, by name: the paper's first-hop and second-hop.",
        default=("first_hop", "second_hop"),
    )
    early_fraction: float = _doc(
        "fraction of layers that are early (floor, at least one each side); the paper's 24 of "
        "OLMo-7B's 32 layers.",
        default=0.75,
    )
    paraphrases: bool = _doc(
        "also train the facts' paraphrases (off: the plain experiment).", default=False
    )
    track: bool = _doc(
        "rank every split after every epoch (off roughly halves the cost).", default=True
    )


@dataclass(frozen=True)
class OrderingConfig(TrainConfig):
    """``data_ordering`` (docs/method.md §5.4): must facts come before their implications?"""

    dataset: str = _doc("the dax / wug / zong dataset by name.", default="daxwug")
    orders: tuple[str, ...] = _doc(
        "the phase-1 orders run: the paper's three.",
        default=("joint", "facts_first", "implications_first"),
    )
    finetune_epochs: int | None = _doc(
        "epochs of phase 2 on the held-out facts; None: ``epochs``, as the paper.", default=None
    )
    track_train: int | None = _doc(
        "track the training splits on their first this-many names only (cost); None: all 84.",
        default=None,
    )


@dataclass(frozen=True)
class GraftingConfig(TrainConfig):
    """``weight_grafting`` (docs/method.md §5.5): is "how to use a fact" portable?"""

    dataset: str = _doc(
        "the dax / wug / zong dataset with the paper's prompts (84 training names).",
        default="daxwug_paper",
    )
    n_train: int | None = _doc(
        "use only the first this-many training names (quick runs); None: all 84, as the paper.",
        default=None,
    )


@dataclass(frozen=True)
class GraftingVariantConfig(TrainConfig):
    """``weight_grafting_heldout_variant``: not the paper's design (20 held-out names)."""

    dataset: str = _doc(
        "the dax / wug / zong dataset with this library's prompts.", default="daxwug"
    )


@dataclass(frozen=True)
class LocalisationConfig(GraftingConfig):
    """``graft_localisation`` (docs/method.md §5.6): its grafting recipe is also Delta_test's."""


@dataclass(frozen=True)
class LocalisationVariantConfig(GraftingVariantConfig):
    """``graft_localisation_counterfactual_variant``: not the paper's design."""


@dataclass(frozen=True)
class FaithfulnessConfig(Settings):
    """``faithfulness``: which cells are checked against the exact intervention."""

    top_k: int = _doc(
        "check the cells with the top_k largest |score| (the ones a reader looks at).", default=20
    )
    n_random: int = _doc(
        "and this many further cells drawn uniformly, so small scores are checked too.", default=20
    )
    seed: int = _doc("seeds the random draw of cells.", default=0)
    steps: int | None = _doc(
        "None: the first-order informative score; m: the integrated score with m steps.",
        default=None,
    )
    batch_size: int = _doc("items per forward pass (memory against speed).", default=32)
