# ---
# Twin of 03_synthetic_worlds.ipynb (percent format). After editing, regenerate the notebook
# (outputs stripped) with: .venv/bin/python tests/test_tutorial_03.py
# ---

# %% [markdown]
# # Tutorial 3: synthetic worlds — pretraining where OCR can be studied
#
# The paper's central claim is about *pretraining*: a model learns extractive structures when it
# sees implications of facts it already knows. With a real LM we cannot control what it saw. Here we
# can: we draw a small **world** (people, cities, countries, languages, landmarks, mayors and the
# made-up relations *wug* and *zong*), write its pretraining corpus in a chosen **order**
# (curriculum), pretrain a small Llama-style model on it from scratch on a CPU, and then run the
# library's OCR experiment on entities the model has never seen.
#
# This notebook uses a deliberately tiny world and model so that it runs in well under a minute
# (it is executed in CI). The default world model (`load_model("world-default")`) and the full
# ordering experiment are at the end.

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from extractive_lens.data import validate
from extractive_lens.experiments.ocr import verify_ocr
from extractive_lens.memorization import memorization
from extractive_lens.subnetworks import MaskConfig, heuristic_core
from extractive_lens.worlds import (
    CURRICULA,
    CorpusConfig,
    WorldConfig,
    build_corpus,
    build_tokenizer,
    make_world,
)
from extractive_lens.worlds.pretrain import ModelConfig, TrainConfig, pretrain

torch.set_num_threads(1)  # models this small run fastest on one thread

# %% [markdown]
# ## 1. A world
#
# A `WorldConfig` fixes the sizes and the seed; the same config always gives the same world. Every
# name is one made-up word. People are split into **known** (their fact *and* its implications
# are in pretraining), **fact-only** (only the fact) and **held-out** (only a mention
# "X is a person": their facts are the new facts of the OCR finetune). Cities are split the same
# way for their mayors (the second-hop relation).

# %%
config = WorldConfig(
    seed=3,
    n_countries=6,
    n_known_people=8,
    n_fact_only_people=3,
    n_heldout_people=5,
    n_known_mayor_cities=4,
    n_fact_only_mayor_cities=2,
    n_animals=6,
)
world = make_world(config)
for city in world.cities[:3]:
    print(city)
for person in world.people[::6]:
    print(person)

# %% [markdown]
# Every relation is rendered through several paraphrase templates; the first one is canonical
# and is what the OCR datasets test. Implications are two-hop compositions: *speaks*
# (person → city → language), *zong* (person → city → animal, through the made-up *wug*) and
# *landmark_mayor* (landmark → city → mayor, where the new fact is the second hop).

# %%
facts = world.facts()
for relation in ("lives_in", "speaks", "zong", "mayor", "landmark_mayor"):
    fact = next(f for f in facts if f.relation == relation)
    print(f"{relation:15s}", [fact.render(i).text for i in range(2)])

# %% [markdown]
# ## 2. The corpus and its curriculum
#
# The corpus is a list of one-sentence documents. The curriculum decides where the facts and
# implications of *known* entities go: `interleaved`, `facts_first`, `implications_first` or
# `facts_only`; everything else is spread uniformly. Exact co-occurrence counts tell what the model
# saw: a held-out person never occurs with any attribute.

# %%
corpus = build_corpus(world, CorpusConfig("facts_first", repeats=100))
print(len(corpus), "sentences;", CURRICULA)
print(corpus.texts()[:3])
counts = corpus.counts()
for person in (world.people_in("known")[0], world.people_in("heldout")[0]):
    city = world.city(person.city)
    print(
        person.group,
        person.name,
        "-> city:",
        counts[(person.name, city.name)],
        "language:",
        counts[(person.name, city.language)],
    )
known = world.people_in("known")[0].name
print(
    "facts_first: last fact at",
    max(corpus.positions(known, "fact")),
    "first implication at",
    min(corpus.positions(known, "implication")),
)

# %% [markdown]
# ## 3. A tokenizer built from the world's vocabulary
#
# Word-level, offline: every entity is one token, so the option sets of the OCR datasets have
# distinct first tokens and `validate` passes.

# %%
tokenizer = build_tokenizer(world)
print(len(tokenizer), tokenizer.tokenize("The people in the city " + known + " is from speak"))
datasets = world.datasets()
for dataset in datasets.values():
    validate(dataset, tokenizer)
print({name: len(d.facts) for name, d in datasets.items()})

# %% [markdown]
# ## 4. Pretraining from scratch
#
# A 2-layer Llama (about 0.1M parameters here; the experiments use 4 layers, d_model 128) is
# trained as a plain Hugging Face model with AdamW, warmup and cosine decay, then wrapped in a
# `TransformerBridge` like every other model. The history tracks mean ranks on pretraining
# entities: known facts, known (trained) implications, the *latent* two-hop on fact-only people
# (never trained), mayors, and background knowledge.

# %%
result = pretrain(
    world,
    CorpusConfig("interleaved", repeats=100),
    ModelConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256),
    TrainConfig(lr=3e-3, batch_size=32, eval_every=100),
    progress=False,
)
model = result.model
print(f"{result.n_params} parameters, {result.seconds:.0f} s")
for row in result.history:
    print({k: round(v, 2) for k, v in row.items() if k not in ("tokens", "lr")})

# %% [markdown]
# ## 5. OCR on held-out entities, with the library's experiment unchanged
#
# `verify_ocr` finetunes on the held-out people's facts and ranks their implications against the
# deranged-pairing control. The pre-check shows what the pretrained model can already do:
# `known_hop` is the second hop (city → language), `known_latent_implications` the two-hop on
# fact-only people.

# %%
ocr = verify_ocr(model, datasets["first_hop"], lr=1e-3, epochs=10, paraphrases=True, progress=False)
print(ocr.precheck)
print(ocr.verdict())

# %% [markdown]
# ## 6. Two more lenses on the same finetune: memorization and subnetworks
#
# **Distributional memorization** (Wang et al., 2024) asks whether the model's confidence follows
# how often the item's input and output co-occur in the pretraining corpus. Here the corpus is
# known exactly, so the counts C(x, y) are exact: known people's implications co-occur with their
# person in the corpus; the held-out people's implications never do (C = 0 by construction), so any
# OCR is, by definition, not memorization. The table gives per split the mean count, the mean model
# log-probability before and after the finetune, and the Spearman correlation over items between
# the model's log-probability and the task-gram log-probability log C(x, y) / C(x) (smoothed),
# with a bootstrap interval (`nan` where all counts in a split are equal).

# %%
corpus = build_corpus(world, CorpusConfig("interleaved", repeats=100))
mem = memorization(model, datasets["first_hop"], corpus, delta=ocr.delta, n_boot=200)
print(mem.markdown())

# %% [markdown]
# **Subnetworks and the heuristic core** (Bhaskar et al., 2024): learn hard-concrete masks over the
# heads and MLPs of the finetuned model that keep its behaviour on the *facts* at a target sparsity
# (pruned units are mean-ablated), one per seed; evaluate each on the facts and on the implications
# (does the subnetwork keep OCR?); the **core** is what every seed keeps. With the finetune's delta
# the result also lists the top informative / upstream / downstream components and how often
# subnetworks that keep OCR keep them. (Tiny settings here; the defaults are 400 steps, three
# sparsities and three seeds.)

# %%
core = heuristic_core(
    model,
    datasets["first_hop"],
    ocr.delta,
    sparsities=(0.5,),
    seeds=(0, 1),
    config=MaskConfig(steps=100),
    counterfactuals=2,
)
print(core.markdown())

# %% [markdown]
# With five held-out people and a two-layer model this is a smoke test, not a result (a mean rank
# over five items among five options is very noisy). The numbers that matter come from the
# ordering experiment, which pretrains a 4-layer model per curriculum and seed:
#
# ```bash
# python -m extractive_lens.worlds --threads 1 ordering --out runs/worlds-ordering --seeds 0 1 2
# python -m extractive_lens.worlds --threads 1 ablation --out runs/worlds-ablation
# ```
#
# and the default world model, pretrained on first use (1-3 minutes on a CPU) and cached:
#
# ```python
# from extractive_lens.worlds import load_world_model, world_of
# model = load_world_model("world-default")   # also load_model("world-default")
# world = world_of("world-default")
# verify_ocr(model, world.zong(), lr=1e-3, epochs=10, paraphrases=True).verdict()
# ```
#
# See docs/results.md, section "Synthetic worlds", for the results, and docs/results_lenses.md
# for the two lenses on world models (`python docs/make_results_lenses.py`).
