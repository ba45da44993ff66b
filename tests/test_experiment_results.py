"""Every experiment result meets one protocol and reloads from disk; every experiment's defaults
come from its configuration class (function, registry and keyword overrides agree)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch

from extractive_lens.data import daxwug, first_hop
from extractive_lens.experiments import (
    EXPERIMENTS,
    data_ordering,
    faithfulness,
    graft_localisation,
    layer_freezing,
    verify_ocr,
    weight_grafting,
)
from extractive_lens.experiments.common import head
from extractive_lens.experiments.protocol import ExperimentResult
from extractive_lens.experiments.registry import load_result, result_table, summarize
from extractive_lens.experiments.settings import (
    FaithfulnessConfig,
    FreezingConfig,
    GraftingConfig,
    LocalisationConfig,
    OCRConfig,
    OrderingConfig,
    TrainConfig,
)

LR = 3e-3


def _same(a, b) -> bool:
    """Equal as JSON (so NaN equals NaN and tuples equal lists)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def results(tiny_llama):
    """One result of every experiment on the tiny model (one epoch, few names)."""
    ocr = verify_ocr(tiny_llama, first_hop(n_people=6), lr=LR, epochs=1, progress=False)
    small = head(daxwug(0, prompts="paper"), 4, 6)
    grafting = weight_grafting(tiny_llama, small, lr=LR, epochs=1, progress=False)
    items = first_hop(n_people=6)
    return {
        "ocr": ocr,
        "freezing": layer_freezing(
            tiny_llama, [first_hop(n_people=6)], lr=LR, epochs=1, track=False, progress=False
        ),
        "ordering": data_ordering(
            tiny_llama, head(daxwug(), 4, 4), orders=["joint"], lr=LR, epochs=1, progress=False
        ),
        "grafting": grafting,
        "localisation": graft_localisation(tiny_llama, small, grafting=grafting, progress=False),
        "faithfulness": faithfulness(
            tiny_llama, ocr.delta, items.implications, items.implication_options, top_k=3,
            n_random=3,
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "name", ["ocr", "freezing", "ordering", "grafting", "localisation", "faithfulness"]
)
def test_every_result_round_trips_through_disk(results, name, tmp_path):
    result = results[name]
    assert isinstance(result, ExperimentResult)
    rebuilt = type(result).from_dict(result.to_dict())
    assert _same(rebuilt.table(), result.table())
    assert _same(rebuilt.summary(), result.summary())
    result.save(tmp_path / "out")
    loaded = load_result(tmp_path / "out")
    assert type(loaded) is type(result)
    assert _same(loaded.table(), result.table()) and _same(loaded.summary(), result.summary())
    strip = ("provenance", "versions", "created", "platform")
    keep = {k: v for k, v in result.to_dict().items() if k not in strip}
    assert _same({k: v for k, v in loaded.to_dict().items() if k not in strip}, keep)
    assert len(loaded.figure().data) > 0
    assert _same(summarize(loaded), result.summary())
    assert _same(result_table(loaded), result_table(result))


def test_ocr_sweep_rows_are_the_final_row(results):
    ocr = results["ocr"]
    (row,) = ocr.seed_rows()
    assert row["dataset"] == ocr.dataset and row["implications"] == ocr.final()["implications"]
    assert row["ocr effect"] == pytest.approx(ocr.ocr_effect()[0], nan_ok=True)
    assert ocr.summary()["ocr_effect"] == pytest.approx(ocr.ocr_effect()[0], nan_ok=True)
    assert len(ocr.table()) == 2  # the per-epoch table is unchanged: epochs 0 and 1


def test_a_loaded_ocr_result_has_its_delta(results, tmp_path):
    ocr = results["ocr"]
    ocr.save(tmp_path / "ocr")
    loaded = load_result(tmp_path / "ocr")
    assert set(loaded.delta) == set(ocr.delta)
    assert all(torch.equal(loaded.delta[k], ocr.delta[k]) for k in ocr.delta)
    assert not type(ocr).from_dict(ocr.to_dict()).delta  # to_dict holds no tensors


def test_load_result_names_what_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="no results.json"):
        load_result(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"experiment": "nope"}))
    with pytest.raises(ValueError, match="'nope'"):
        load_result(tmp_path)


CONFIGS = {
    "ocr": OCRConfig,
    "freezing": FreezingConfig,
    "ordering": OrderingConfig,
    "grafting": GraftingConfig,
    "localisation": LocalisationConfig,
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_registry_defaults_are_the_config_class_defaults(name):
    cls = CONFIGS[name]
    defaults = EXPERIMENTS[name].defaults
    for f in dataclasses.fields(cls):
        assert f.metadata["doc"], f"{cls.__name__}.{f.name} is undocumented"
        if f.metadata["registry"]:
            expected = list(f.default) if isinstance(f.default, tuple) else f.default
            assert defaults[f.name] == expected
        else:
            assert f.name not in defaults
    assert set(defaults) >= {"lr", "epochs", "batch_size", "seed", "data_seed"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().lr = 1.0


def test_experiment_signatures_hold_no_training_defaults():
    for fn in (verify_ocr, layer_freezing, data_ordering, weight_grafting, graft_localisation):
        params = inspect.signature(fn).parameters
        assert not {"lr", "epochs", "batch_size", "seed"} & set(params), fn.__name__
    assert "top_k" not in inspect.signature(faithfulness).parameters
    assert TrainConfig().lr == OCRConfig().lr == 1e-4 and FaithfulnessConfig().top_k == 20


def test_keywords_and_config_give_the_same_run(tiny_llama):
    ds = first_hop(n_people=6)
    by_keyword = verify_ocr(tiny_llama, ds, lr=LR, epochs=1, seed=2, progress=False)
    config = OCRConfig(lr=LR, epochs=1, seed=2)
    by_config = verify_ocr(tiny_llama, ds, config=config, progress=False)
    overridden = verify_ocr(
        tiny_llama, ds, config=dataclasses.replace(config, seed=5), seed=2, progress=False
    )
    for run in (by_config, overridden):
        assert run.config == by_keyword.config
        assert all(torch.equal(run.delta[k], by_keyword.delta[k]) for k in by_keyword.delta)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['lrr'\]"):
        verify_ocr(tiny_llama, ds, lrr=1e-3)
    with pytest.raises(TypeError, match="config must be a GraftingConfig"):
        weight_grafting(tiny_llama, config=OCRConfig())
