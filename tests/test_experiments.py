"""Experiments 3-5 (layer freezing, data ordering, weight grafting) end to end on a tiny model.

The datasets are cut down (8 held-out items, 16 training names) and trainings run 1-2 epochs:
these tests check the logic (which weights each row uses, which data each phase sees, exactness
of reverting and grafting, reproducibility), not that the tiny model learns anything.
"""

from __future__ import annotations

import json

import pytest
import torch

from extractive_lens.data import daxwug, first_hop, second_hop
from extractive_lens.delta import layer_of, snapshot
from extractive_lens.experiments import ordering as ordering_module
from extractive_lens.experiments.common import (
    early_late_layers,
    head,
    markdown_table,
    mean_spread,
    mean_spread_table,
    split_ranks,
)
from extractive_lens.experiments.freezing import MODES, FreezingResult, layer_freezing
from extractive_lens.experiments.grafting import GraftResult, weight_grafting_heldout_variant
from extractive_lens.experiments.grafting_design import with_counterfactual_control
from extractive_lens.experiments.ordering import ORDERS, OrderingResult, data_ordering
from extractive_lens.models import named_parameters
from extractive_lens.training import finetune

LR = 3e-3


pytestmark = pytest.mark.usefixtures("one_thread")


def small_daxwug(n_test: int = 8, n_train: int = 8):
    """daxwug cut to ``n_test`` held-out and ``n_train`` training names (the counterfactual
    draw still changes every name's city)."""
    return head(daxwug(seed=0), n_test, n_train)


def same_weights(model, before) -> bool:
    return all(torch.equal(p, before[n]) for n, p in named_parameters(model).items())


# --------------------------------------------------------------------------- helpers


def test_early_late_split():
    assert early_late_layers(32, 0.75) == (list(range(24)), list(range(24, 32)))
    assert early_late_layers(30, 0.75) == (list(range(22)), list(range(22, 30)))
    assert early_late_layers(2, 0.75) == ([0], [1])
    assert early_late_layers(4, 0.99) == ([0, 1, 2], [3])
    with pytest.raises(ValueError, match="strictly between"):
        early_late_layers(4, 1.0)
    with pytest.raises(ValueError, match="at least 2 layers"):
        early_late_layers(1, 0.5)


def test_head_keeps_aligned_items():
    ds = head(daxwug(), 5, 7)
    assert len(ds.facts) == len(ds.split("counterfactual_implications").examples) == 5
    assert len(ds.split("train_facts").examples) == 7 and len(ds.split("wug").examples) == 20
    assert ds.facts[0] == daxwug().facts[0] and ds.fact_options == daxwug().fact_options
    assert len(head(first_hop(), 3).split("known_hop").examples) == 20
    with pytest.raises(ValueError, match="at least 2"):
        head(first_hop(), 1)


def test_mean_spread_table_combines_seeds():
    a = [{"setting": "x", "v": 1.0}, {"setting": "y", "v": 2.0}]
    b = [{"setting": "x", "v": 3.0}, {"setting": "y", "v": None}]
    rows = mean_spread_table([a, b])
    assert rows[0]["setting"] == "x" and rows[0]["v"]["mean"] == 2.0
    assert rows[0]["v"]["std"] == pytest.approx(2**0.5)
    assert rows[1]["v"]["n"] == 1
    assert "2.00 ± 1.41" in markdown_table(rows)
    with pytest.raises(ValueError, match="disagree"):
        mean_spread_table([a, [{"setting": "z", "v": 1.0}, a[1]]])
    assert mean_spread([])["n"] == 0


# --------------------------------------------------------------------------- layer freezing


@pytest.fixture(scope="module")
def freeze(tiny_llama):
    data = [first_hop(n_people=8), second_hop(n_people=8)]
    before = snapshot(tiny_llama)
    result = layer_freezing(tiny_llama, data, lr=LR, epochs=1, progress=False)
    assert same_weights(tiny_llama, before)
    return result, data


def test_freezing_all_reverted_gives_the_untrained_ranks_exactly(freeze, tiny_llama):
    result, data = freeze
    for ds in data:
        splits = list(result.ranks[ds.name]["all_reverted"])
        untrained = split_ranks(tiny_llama, ds, splits)
        assert result.ranks[ds.name]["all_reverted"] == untrained
        first = result.histories[ds.name]["full"][0]  # epoch 0 of the training
        for split in splits:
            assert first[split] == pytest.approx(sum(untrained[split]) / len(untrained[split]))


def test_freezing_each_row_uses_the_right_layers(freeze, tiny_llama):
    result, data = freeze
    early, late = result.config["early_layers"], result.config["late_layers"]
    assert (early, late) == ([0], [1])
    ds = data[0]
    deltas = result.deltas[ds.name]
    assert {layer_of(n, tiny_llama) for n in deltas["full"]} == {0, 1}
    assert {layer_of(n, tiny_llama) for n in deltas["early_frozen"]} == set(late)  # early excluded
    assert {layer_of(n, tiny_llama) for n in deltas["late_frozen"]} == set(early)
    splits = list(result.ranks[ds.name]["none"])
    full = deltas["full"]
    assert result.ranks[ds.name]["none"] == split_ranks(tiny_llama, ds, splits, delta=full)
    assert result.ranks[ds.name]["early_reverted"] == split_ranks(
        tiny_llama, ds, splits, delta=full.restrict(layers=late)
    )
    assert result.ranks[ds.name]["late_frozen"] == split_ranks(
        tiny_llama, ds, splits, delta=deltas["late_frozen"]
    )
    # the full training's last history row is the "none" row
    last = result.histories[ds.name]["full"][-1]
    none = result.mean_ranks()[ds.name]["none"]
    assert all(last[s] == pytest.approx(none[s]) for s in splits)


def test_freezing_table_summary_and_figure(freeze, tmp_path):
    result, _ = freeze
    rows = result.table()
    assert [r["setting"] for r in rows] == list(MODES.values())
    assert rows[0]["paper second_hop impl."] == 1.80 and rows[1]["paper first_hop fact"] == 5.10
    assert {"first_hop fact", "first_hop impl.", "first_hop control"} <= set(rows[0])
    summary = result.summary()
    assert "second_hop/late_frozen/implications" in summary
    assert "first_hop/none/ocr_effect" in summary
    assert len(result.figure().data) == 8  # 2 datasets x (fact, impl.) x (ours, paper)
    out = result.save(tmp_path / "freezing")
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "freezing" and len(saved["table"]) == 6
    assert (out / "figure.html").is_file() and not (out / "deltas").exists()
    with pytest.raises(FileExistsError):
        result.save(tmp_path / "freezing")
    assert isinstance(result, FreezingResult)


def test_freezing_is_reproducible_and_checks_its_inputs(tiny_llama):
    ds = first_hop(n_people=2)
    a = layer_freezing(tiny_llama, [ds], lr=LR, epochs=1, seed=3, track=False, progress=False)
    b = layer_freezing(tiny_llama, [ds], lr=LR, epochs=1, seed=3, track=False, progress=False)
    assert a.ranks == b.ranks
    assert set(a.histories["first_hop"]["full"][-1]) == {"epoch", "loss"}  # not tracked
    assert all(
        torch.equal(a.deltas["first_hop"]["full"][n], b.deltas["first_hop"]["full"][n])
        for n in a.deltas["first_hop"]["full"]
    )
    with pytest.raises(ValueError, match="no datasets"):
        layer_freezing(tiny_llama, [], progress=False)
    with pytest.raises(ValueError, match="strictly between"):
        layer_freezing(tiny_llama, [ds], early_fraction=0, progress=False)
    with pytest.raises(ValueError, match="must differ"):
        layer_freezing(tiny_llama, [ds, ds], progress=False)


# --------------------------------------------------------------------------- data ordering


@pytest.fixture(scope="module")
def ordered(tiny_llama):
    calls = []
    real = ordering_module.finetune

    def recording(model, examples, **kw):
        w = named_parameters(model)["model.layers.0.mlp.down_proj.weight"].detach().clone()
        calls.append({"examples": list(examples), "weight": w, "epochs": kw["epochs"]})
        return real(model, examples, **kw)

    ds = small_daxwug()
    before = snapshot(tiny_llama)
    ordering_module.finetune = recording
    try:
        result = data_ordering(tiny_llama, ds, lr=LR, epochs=1, finetune_epochs=2, progress=False)
    finally:
        ordering_module.finetune = real
    assert same_weights(tiny_llama, before)
    return result, calls, ds


def test_orders_see_the_right_data(ordered):
    result, calls, ds = ordered
    tf, ti = ds.split("train_facts").examples, ds.split("train_implications").examples
    expected = [
        [set(tf) | set(ti), set(ds.facts)],  # joint, then held-out facts
        [set(tf), set(ti), set(ds.facts)],  # facts first
        [set(ti), set(tf), set(ds.facts)],  # implications first
    ]
    assert [set(c["examples"]) for c in calls] == [p for order in expected for p in order]
    assert len(calls[0]["examples"]) == len(tf) + len(ti)
    assert [c["epochs"] for c in calls] == [1, 2, 1, 1, 2, 1, 1, 2]
    assert [p["split"] for p in result.phases["facts_first"]] == [
        "train_facts",
        "train_implications",
        "facts",
    ]
    assert [p["stage"] for p in result.phases["implications_first"]] == [1, 1, 2]


def test_each_phase_starts_from_the_previous_weights(ordered, tiny_llama):
    result, calls, _ = ordered
    name = "model.layers.0.mlp.down_proj.weight"
    theta = named_parameters(tiny_llama)[name].detach()
    starts = [0, 2, 5]  # first call of each order
    for i in starts:
        assert torch.equal(calls[i]["weight"], theta)  # every order starts from theta
    assert not torch.equal(calls[1]["weight"], theta)  # phase 2 starts from the trained model
    assert not torch.equal(calls[4]["weight"], calls[3]["weight"])
    assert set(result.deltas) == set(ORDERS)


def test_ordering_history_and_final(ordered):
    result, _, ds = ordered
    for order, rows in result.history.items():
        n_epochs = sum(p["epochs"] for p in result.phases[order])
        assert [r["epoch"] for r in rows] == list(range(n_epochs + 1))
        assert rows[-1]["examples_seen"] == 2 * 8 + 2 * len(ds.facts)  # same for every order
        final = result.final()[order]
        assert all(final[s] == pytest.approx(rows[-1][s]) for s in final)
    table = result.table()
    assert [r["order"] for r in table] == list(ORDERS)
    assert table[0]["paper held-out impl."] == 0.8
    assert "implications_first/implications" in result.summary()
    fig = result.figure()
    assert len(fig.data) == 5 * 3  # 5 tracked splits x 3 orders
    assert isinstance(result, OrderingResult)


def test_ordering_checks_its_inputs(tiny_llama):
    with pytest.raises(ValueError, match="train_facts"):
        data_ordering(tiny_llama, first_hop(), progress=False)
    with pytest.raises(ValueError, match="orders must be"):
        data_ordering(tiny_llama, small_daxwug(), orders=["sideways"], progress=False)


# ------------------------------------------------- weight grafting (held-out variant; the paper's
# design is tested in tests/test_grafting_paper.py)


@pytest.fixture(scope="module")
def grafted(tiny_llama):
    ds = small_daxwug()
    before = snapshot(tiny_llama)
    result = weight_grafting_heldout_variant(
        tiny_llama, ds, lr=LR, epochs=2, seed=1, progress=False
    )
    assert same_weights(tiny_llama, before)
    return result, ds


def test_graft_is_exactly_the_difference_of_the_two_trained_models(grafted, tiny_llama, precision):
    result, ds = grafted
    # Train the implications by hand on the facts model theta + Delta_F ...
    with result.deltas["F"].applied(tiny_llama):
        facts_model = snapshot(tiny_llama)
        by_hand = finetune(tiny_llama, ds.implications, lr=LR, epochs=2, seed=1, progress=False)
        with by_hand.delta.applied(tiny_llama):
            both_model = snapshot(tiny_llama)
    # ... the graft is exactly (facts + implications model) - (facts model).
    graft = result.graft
    assert set(graft) == set(by_hand.delta)
    for n in graft:
        assert torch.equal(graft[n], by_hand.delta[n])
        precision.check(
            both_model[n].float() - facts_model[n].float(),
            graft[n],
            eps=torch.finfo(torch.float32).eps,
            scale=facts_model[n].abs() + graft[n].abs(),
            msg=n,
        )
    assert result.deltas["F,I(F)"].metadata["base"] is not None
    assert result.deltas["I(F)"].metadata["base"] is None


def test_graft_rows_apply_the_right_deltas(grafted, tiny_llama):
    result, ds = grafted
    full = with_counterfactual_control(ds)
    splits = list(result.ranks["theta"])
    d = result.deltas
    assert result.ranks["theta"] == split_ranks(tiny_llama, full, splits)
    assert result.ranks["counterfactual"] == split_ranks(tiny_llama, full, splits, delta=d["F'"])
    assert result.ranks["graft"] == split_ranks(
        tiny_llama, full, splits, delta=[d["F'"], d["F,I(F)"]]
    )
    assert result.ranks["control"] == split_ranks(
        tiny_llama, full, splits, delta=[d["F'"], d["I(F)"]]
    )
    # the counterfactual draw changes every answer
    cf = full.split("counterfactual_implications").examples
    assert all(a.answer != b.answer for a, b in zip(full.implications, cf, strict=True))


def test_graft_table_and_errors(grafted, tiny_llama, tmp_path):
    result, _ = grafted
    rows = result.table()
    assert [r["weights"] for r in rows][2] == "+ Delta_{F,I(F)} (graft)"
    assert rows[2]["paper I(F')"] == 1.13 and rows[0]["paper I(F')"] is None
    assert {"I(F')", "I(F)", "F'", "F", "control I(F')"} <= set(rows[0])
    assert set(result.training_checks()) == {"F", "F,I(F)", "F'", "I(F)"}
    assert "graft/counterfactual_implications" in result.summary()
    assert result.config["design"] == "heldout_variant"
    assert result.changed == tuple(range(8))  # the derangement changes every answer
    result.figure()
    out = result.save(tmp_path / "graft", save_deltas=True)
    assert (out / "deltas" / "F_prime.safetensors").is_file()
    assert isinstance(result, GraftResult)
    with pytest.raises(ValueError, match="counterfactual_facts"):
        weight_grafting_heldout_variant(tiny_llama, first_hop(), progress=False)


# --------------------------------------------------------------------------- graft localisation


def test_graft_localisation_scores_the_right_deltas(grafted, tiny_llama, tmp_path):
    from extractive_lens.experiments.figures import r_squared
    from extractive_lens.experiments.localisation import (
        LocalisationResult,
        graft_localisation_counterfactual_variant,
    )
    from extractive_lens.scores import downstream_scores, informative_scores

    grafting, ds = grafted
    before = snapshot(tiny_llama)
    result = graft_localisation_counterfactual_variant(tiny_llama, ds, grafting=grafting)
    assert same_weights(tiny_llama, before)
    assert isinstance(result, LocalisationResult)
    cf = with_counterfactual_control(ds).split("counterfactual_implications")
    graft, counterfactual = grafting.deltas["F,I(F)"], grafting.deltas["F'"]
    with counterfactual.applied(tiny_llama):  # the graft's informative scores on theta + F'
        inf = informative_scores(tiny_llama, graft, cf.examples, cf.options).canonical()
    with graft.applied(tiny_llama):  # OCR of F' in the grafted model: downstream scores
        down = downstream_scores(tiny_llama, counterfactual, cf.examples, cf.options).canonical()
    assert torch.equal(torch.tensor(result.informative["mlp"]), inf.mlp)
    assert torch.equal(torch.tensor(result.downstream["heads"]), down.heads)
    assert result.positions == inf.labels and "X1" in "".join(result.positions)
    rows = {r["components"]: r for r in result.table()}
    n_pos = len(result.positions)
    assert rows["MLPs"]["cells"] == n_pos * 2 and rows["heads"]["cells"] == n_pos * 2 * 4
    assert rows["K/V heads"]["cells"] == n_pos * 2 * 2  # grouped-query attention
    x, y, labels = result.cells("mlp")
    assert rows["MLPs"]["r²"] == pytest.approx(r_squared(x, y)[0])
    assert 0 <= rows["MLPs"]["r²"] <= 1 and rows["MLPs"]["paper r²"] == 0.49
    assert labels[0].startswith("L0.MLP @")
    assert result.graft_ranks == grafting.mean_ranks()["graft"]
    assert len(result.figure().data) == 6  # 3 kinds x (cells, fitted line)
    assert (result.save(tmp_path / "loc") / "results.json").is_file()
    with pytest.raises(ValueError, match="grafting ran on"):
        graft_localisation_counterfactual_variant(tiny_llama, first_hop(), grafting=grafting)


def test_r_squared():
    from extractive_lens.experiments.figures import r_squared

    assert r_squared([0, 1, 2], [1, 3, 5]) == pytest.approx((1.0, 2.0, 1.0))
    assert r_squared([0, 1, 2], [1, 1, 1])[0] != r_squared([0, 1, 2], [1, 1, 1])[0]  # NaN
    assert r_squared([1, 2, 3, 4], [4, 3, 2, 1])[1] == pytest.approx(-1.0)
