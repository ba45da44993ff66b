"""Pretraining world models: learning, caching, resuming, and the library's experiments on them."""

from __future__ import annotations

import json

import pytest
import torch

from extractive_lens.data import validate
from extractive_lens.experiments.ocr import verify_ocr
from extractive_lens.metrics import mean_rank
from extractive_lens.models import ModelLoadError, named_parameters
from extractive_lens.worlds import CorpusConfig, WorldConfig, make_world
from extractive_lens.worlds.pretrain import (
    WORLD_MODELS,
    ModelConfig,
    TrainConfig,
    WorldModelSpec,
    eval_sets,
    load_world_model,
    pretrain,
    threads,
    world_model_dir,
)

SMALL = WorldConfig(
    seed=3,
    n_countries=6,
    n_known_people=8,
    n_fact_only_people=3,
    n_heldout_people=5,
    n_known_mayor_cities=4,
    n_fact_only_mayor_cities=2,
    n_animals=6,
)
TINY = ModelConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256)
SPEC = WorldModelSpec(
    world=SMALL,
    corpus=CorpusConfig(repeats=100),
    model=TINY,
    train=TrainConfig(lr=3e-3, batch_size=32, eval_every=100),
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # One thread: these models are too small to gain from more, and on a shared, loaded machine
    # extra threads only oversubscribe the cores.
    with pytest.MonkeyPatch.context() as mp, threads(1):
        mp.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setitem(WORLD_MODELS, "world-test", SPEC)
        yield


@pytest.fixture(scope="module")
def trained(cache):
    """A 2-layer model pretrained for ~300 steps on a small world, built via load_world_model."""
    return load_world_model("world-test", progress=False)


def test_pretraining_learns_known_facts(trained):
    world = make_world(SMALL)
    sets = eval_sets(world)
    examples, options = sets["known_facts"]
    chance = (len(options) - 1) / 2
    assert chance == 5.5
    assert mean_rank(trained, examples, options) < 1.0
    assert mean_rank(trained, *sets["background"]) < 1.0
    history = json.loads((world_model_dir("world-test") / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["step"] > 250


def test_world_model_is_cached_and_datasets_run_unchanged(trained):
    again = load_world_model("world-test", build=False)
    a, b = named_parameters(trained), named_parameters(again)
    assert all(torch.equal(a[n], b[n]) for n in a)
    dataset = make_world(SMALL).first_hop()
    validate(dataset, trained.tokenizer)
    result = verify_ocr(trained, dataset, lr=1e-3, epochs=1, progress=False)
    assert set(result.final()) == {"facts", "implications", "control_implications"}
    assert result.precheck["known_hop"] < 1.0  # the second hop is background knowledge


def test_missing_world_model_names_the_command(cache):
    WORLD_MODELS["world-missing"] = WorldModelSpec(world=WorldConfig(seed=99))
    try:
        with pytest.raises(ModelLoadError, match="build-default --name world-missing"):
            load_world_model("world-missing", build=False)
    finally:
        del WORLD_MODELS["world-missing"]
    with pytest.raises(ValueError, match="unknown world model"):
        load_world_model("nope")


def test_resume_gives_the_same_weights(cache, tmp_path):
    args = (SMALL, CorpusConfig(repeats=3), ModelConfig(n_layers=1, d_model=32, d_mlp=64))
    train = TrainConfig(batch_size=32, eval_every=0, checkpoint_every=3)
    whole = pretrain(*args, train, out_dir=tmp_path / "a", progress=False)
    part = pretrain(*args, train, out_dir=tmp_path / "b", progress=False, max_steps=4)
    assert part.history[-1]["step"] == 4 < whole.history[-1]["step"]
    resumed = pretrain(*args, train, out_dir=tmp_path / "b", progress=False)
    assert resumed.history[-1]["step"] == whole.history[-1]["step"]
    a, b = named_parameters(whole.model), named_parameters(resumed.model)
    assert all(torch.equal(a[n], b[n]) for n in a)
    with pytest.raises(FileExistsError, match="another configuration"):
        pretrain(
            SMALL, CorpusConfig(repeats=4), args[2], train, out_dir=tmp_path / "b", progress=False
        )


def test_ordering_experiment_runs_and_reuses_finished_runs(cache, tmp_path):
    from extractive_lens.worlds.experiment import FinetuneSpec, OrderingConfig, ordering_experiment

    config = OrderingConfig(
        curricula=("facts_first", "facts_only"),
        seeds=(0,),
        world=SMALL,
        repeats=2,
        model=ModelConfig(n_layers=1, d_model=32, d_mlp=64),
        train=TrainConfig(eval_every=0),
        finetunes=(FinetuneSpec("all", epochs=1),),
    )
    result = ordering_experiment(config, tmp_path, progress=False, log=None)
    table = result.table()
    assert {(r["dataset"], r["curriculum"]) for r in table} == {
        (d, c) for d in ("first_hop", "second_hop", "zong") for c in ("facts_first", "facts_only")
    }
    assert all(0 <= r["implication"] <= 4 for r in table)  # 5 options: ranks 0..4
    assert "| zong | all | facts_first | 1 |" in result.markdown()
    assert (tmp_path / "ordering.md").exists() and (tmp_path / "ordering.html").exists()
    again = ordering_experiment(config, tmp_path, progress=False, log=None)
    assert again.rows == result.rows


def test_ablation_check_on_a_pretrained_world_model(trained):
    from extractive_lens.worlds.experiment import FinetuneSpec, ablation_check

    dataset = make_world(SMALL).zong()
    out = ablation_check(
        trained,
        dataset,
        finetune=FinetuneSpec("all", epochs=2),
        ks=(1, 2),
        n_random=2,
        counterfactuals=1,
    )
    # With nothing ablated, the hooked evaluation reproduces verify_ocr's final ranks.
    assert out["unablated"]["implications"] == pytest.approx(out["ocr"]["implications"])
    assert out["unablated"]["control_implications"] == pytest.approx(
        out["ocr"]["control_implications"]
    )
    assert [(r["role"], r["k"]) for r in out["rows"]] == [
        (role, k) for role in ("upstream", "informative", "downstream") for k in (1, 2)
    ]
    assert all(len(r["random_effects"]) == 2 for r in out["rows"])
    assert [r["k"] for r in out["reverted"]] == [1, 2]
