"""E5 and E6 use the paper's data, base weights and deltas (docs/method.md §7, the authors'
``gradient_grafting.py`` and ``localization.py``), checked by spying on every finetune and score
call of a tiny-model run: which names each training sees, which weights it starts from, which
delta each score measures, at which weights and on which prompts.
"""

from __future__ import annotations

import pytest
import torch

from extractive_lens.data import daxwug, daxwug_names
from extractive_lens.delta import snapshot
from extractive_lens.experiments import grafting as grafting_module
from extractive_lens.experiments import localisation as localisation_module
from extractive_lens.experiments.common import head
from extractive_lens.metrics import ranks
from extractive_lens.models import named_parameters
from extractive_lens.training import finetune as real_finetune

LR, N_TEST, N_TRAIN = 3e-3, 4, 8
PARAM = "model.layers.1.mlp.down_proj.weight"  # a block weight every training changes


pytestmark = pytest.mark.usefixtures("one_thread")


def _names(examples):
    return [e.entity for e in examples]


@pytest.fixture(scope="module")
def spied(tiny_llama):
    """Run the paper's E6 (which runs E5) with every finetune and score call recorded."""
    ds = head(daxwug(0, prompts="paper"), N_TEST, N_TRAIN)
    theta = snapshot(tiny_llama)
    calls: list[dict] = []
    mp = pytest.MonkeyPatch()

    def spy_finetune(model, examples, **kw):
        run = real_finetune(model, examples, **kw)
        calls.append({"kind": "finetune", "examples": list(examples), "base": kw.get("base")})
        calls[-1]["delta"] = run.delta
        return run

    def spy_score(kind, real):
        def call(model, delta, examples, options, **kw):
            now = named_parameters(model)[PARAM].detach().clone()
            calls.append({"kind": kind, "examples": list(examples), "delta": delta, "at": now})
            return real(model, delta, examples, options, **kw)

        return call

    mp.setattr(grafting_module, "finetune", spy_finetune)
    mp.setattr(localisation_module, "finetune", spy_finetune)
    for kind in ("informative", "downstream"):
        name = f"{kind}_scores"
        mp.setattr(localisation_module, name, spy_score(kind, getattr(localisation_module, name)))
    try:
        result = localisation_module.graft_localisation(
            tiny_llama, ds, lr=LR, epochs=1, seed=1, progress=False
        )
    finally:
        mp.undo()
    assert all(torch.equal(p, theta[n]) for n, p in named_parameters(tiny_llama).items())
    return ds, theta, calls, result


def test_dataset_two_is_an_independent_redraw_of_the_training_names():
    ds = daxwug(0, prompts="paper")
    train, train2 = ds.split("train_facts").examples, ds.split("train_facts_2").examples
    names = daxwug_names()
    assert _names(train) == _names(train2) == list(names[20:])  # the 84 training names
    assert _names(ds.split("test_facts").examples) == list(names[:20])
    moved = sum(a.answer != b.answer for a, b in zip(train, train2, strict=True))
    assert 60 <= moved < 84  # independent: most names move, a few keep their city
    per_city = {c: sum(e.answer == c for e in train2) for c in ds.fact_options}
    assert set(per_city.values()) <= {4, 5}  # about four names per city
    assert train[0].prompt == f"{train[0].entity} dax is"  # the authors' prompts
    assert ds.split("train_implications").examples[0].prompt.endswith(" zong is the")
    # adding dataset 2 left every earlier split of the default draw unchanged
    ours = daxwug(0)
    assert [e.answer for e in ours.split("train_facts").examples] == [e.answer for e in train]


def test_e5_trains_the_paper_deltas_on_the_training_names(spied):
    ds, _, calls, result = spied
    trainings = [c for c in calls if c["kind"] == "finetune"]
    assert len(trainings) == 5  # E5's four, then E6's fresh finetune
    split = {
        name: ds.split(name).examples
        for name in ("train_facts", "train_implications", "train_facts_2", "test_facts")
    }
    f, fif, fprime, control, test = trainings
    assert f["examples"] == list(split["train_facts"]) and f["base"] is None
    assert fif["examples"] == list(split["train_implications"])
    assert fif["base"] is f["delta"]  # the graft is trained on top of theta + Delta_F
    assert fprime["examples"] == list(split["train_facts_2"]) and fprime["base"] is None
    assert control["examples"] == list(split["train_implications"]) and control["base"] is None
    held_out = set(_names(split["test_facts"]))
    for t in (f, fif, fprime, control):
        assert not held_out & set(_names(t["examples"]))  # E5 never sees a held-out name
    grafting = result  # the E6 result carries the E5 config
    assert grafting.config["design"] == "paper" and grafting.config["n_items"] == N_TRAIN


def test_e5_rows_evaluate_the_right_weights(spied, tiny_llama):
    ds, _, calls, result = spied
    deltas = [c["delta"] for c in calls if c["kind"] == "finetune"]
    f, graft, fprime, control = deltas[:4]
    impl2 = ds.split("train_implications_2")
    with fprime.applied(tiny_llama), graft.applied(tiny_llama):
        expected = ranks(tiny_llama, impl2.examples, impl2.options).tolist()
    with fprime.applied(tiny_llama), control.applied(tiny_llama):
        wug = ds.split("wug")
        expected_wug = ranks(tiny_llama, wug.examples, wug.options).tolist()
    # E6 reused E5: reconstruct E5's result the same way and compare its rows
    g = grafting_module.weight_grafting(tiny_llama, ds, lr=LR, epochs=1, seed=1, progress=False)
    assert g.ranks["graft"]["counterfactual_implications"] == expected
    assert g.ranks["control"]["wug"] == expected_wug
    assert set(g.ranks["theta"]) == {
        "facts",
        "implications",
        "counterfactual_facts",
        "counterfactual_implications",
        "wug",
    }
    impl = ds.split("train_implications").examples
    assert g.changed == tuple(
        i for i, (a, b) in enumerate(zip(impl, impl2.examples, strict=True)) if a.answer != b.answer
    )
    assert result.graft_ranks == g.mean_ranks()["graft"]


def test_e6_scores_the_paper_quantities(spied):
    ds, theta, calls, result = spied
    deltas = [c["delta"] for c in calls if c["kind"] == "finetune"]
    f, graft, test_delta = deltas[0], deltas[1], deltas[4]
    fresh = [c for c in calls if c["kind"] == "finetune"][4]
    # y's delta: the held-out names' dax facts, trained at theta + Delta_F + Delta_{F,I(F)}
    assert fresh["examples"] == list(ds.split("test_facts").examples)
    for n in fresh["base"]:
        torch.testing.assert_close(fresh["base"][n], f[n] + graft[n])
    (inf,) = [c for c in calls if c["kind"] == "informative"]
    (down,) = [c for c in calls if c["kind"] == "downstream"]
    assert down["delta"] is test_delta
    assert down["examples"] == list(ds.split("test_implications").examples)
    theta_p = theta[PARAM]
    torch.testing.assert_close(down["at"], theta_p + f[PARAM] + graft[PARAM], atol=1e-6, rtol=0)
    # x: the graft's informative scores at theta + Delta_F on (up to) 20 training names' zong
    assert inf["delta"] is graft
    assert inf["examples"] == list(ds.split("train_implications").examples[:20])
    torch.testing.assert_close(inf["at"], theta_p + f[PARAM], atol=1e-6, rtol=0)
    assert not torch.allclose(inf["at"], down["at"])
    # cells on the authors' canonical template "X Y zong is the"
    assert "".join(result.positions).replace(" ", "") == "XYzongisthe"
    assert set(result.ocr_ranks) == {"held-out facts", "held-out zong"}
    rows = {r["components"]: r for r in result.table()}
    assert rows["MLPs"]["paper r²"] == 0.49 and 0 <= rows["MLPs"]["r²"] <= 1


def test_variants_refuse_the_other_design(spied, tiny_llama):
    ds, _, _, _ = spied
    g = grafting_module.weight_grafting(tiny_llama, ds, lr=LR, epochs=1, seed=1, progress=False)
    with pytest.raises(ValueError, match="heldout_variant"):
        localisation_module.graft_localisation_counterfactual_variant(tiny_llama, ds, grafting=g)
