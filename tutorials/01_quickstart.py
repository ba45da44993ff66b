# ruff: noqa: E402 (a notebook imports where it first needs something)
# %% [markdown]
# # Quickstart: does a model answer the implications of new facts, and which parts let it?
#
# This tutorial walks through the whole method of *Extractive Structures Learned in Pretraining
# Enable Generalization on Finetuned Facts* (Feng, Russell, Steinhardt) with `extractive_lens`:
#
# 1. load a model and a dataset of new facts and their implications,
# 2. finetune on the facts and check whether the model answers the implications
#    (out-of-context reasoning, "OCR"), judged against a control,
# 3. compute the three extractive scores (upstream, informative, downstream),
# 4. draw them as heatmaps and as the extractive graph, and write an HTML report.
#
# It runs top to bottom on a tiny random model in a minute (that is what CI does). To see real
# effects, switch to SmolLM2-135M: set the environment variable
# `EXTRACTIVE_LENS_TUTORIAL_MODEL=smollm2-135m` before starting Jupyter, or edit the cell below.
# Everything runs offline on a CPU.

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the model hub

MODEL = os.environ.get("EXTRACTIVE_LENS_TUTORIAL_MODEL", "tiny")
TINY = MODEL.startswith("tiny")
# A random tiny model needs a large learning rate to learn anything in 2 epochs; SmolLM2 uses
# the settings of the docs/method.md pilot (lr 1e-4, 8 epochs).
LR, EPOCHS = (3e-3, 2) if TINY else (1e-4, 8)
COUNTERFACTUALS = 3 if TINY else 10
print(f"model {MODEL}: lr {LR}, {EPOCHS} epochs, {COUNTERFACTUALS} counterfactuals per item")

# %% [markdown]
# ## 1. A model and a dataset
#
# `load_model` returns a TransformerLens `TransformerBridge` (hooks on every component). The
# first-hop dataset has 20 new **facts** about fictional people ("Grace Miller lives in Mumbai")
# and their **implications** ("The people in the city Grace Miller is from speak" -> "Hindi"),
# which are never trained. The **control** pairs each implication prompt with another person's
# answer: a model that ignores who the person is sits near chance there.

# %%
from extractive_lens import first_hop, load_model, model_identity

model = load_model(MODEL)
print(model_identity(model))

dataset = first_hop(seed=0)
for split in ("facts", "implications", "control_implications"):
    example = dataset.splits()[split][0]
    print(f"{split:>22}: {example.prompt!r} -> {example.answer!r}")
print(
    f"{len(dataset.implication_options)} options per item: chance mean rank is "
    f"{(len(dataset.implication_options) - 1) / 2}"
)

# %% [markdown]
# ## 2. Finetune on the facts and evaluate OCR
#
# `verify_ocr` finetunes a copy of the weights on the facts (the model itself is unchanged; the
# change is `result.delta`) and ranks facts, implications and control after every epoch. The
# **rank** of an item is the position of its correct answer among the options by logit
# (0 = best). OCR means the implication rank falls clearly below the control rank.

# %%
from extractive_lens import verify_ocr

result = verify_ocr(model, dataset, lr=LR, epochs=EPOCHS, seed=0, progress=False)
for row in result.table():
    print({k: round(v, 2) for k, v in row.items()})
print(result.verdict())
print(result.capability())

# %% [markdown]
# The training curves: facts solid, implications dashed, control dotted, chance in grey.
# Facts should fall towards 0; OCR shows as the dashed line ending well below the dotted one.

# %%
from extractive_lens.plots import ocr_curves

ocr_curves(result)

# %% [markdown]
# ## 3. The extractive scores
#
# For each component (every MLP and every attention head) at each token position, on the
# implications, with the finetuned delta:
#
# - **informative**: how much giving only this component its finetuned weights helps the
#   answer (where the new fact is stored),
# - **downstream**: how well the component, with its *old* weights, turns its *new* inputs into
#   the answer (what extracts the fact),
# - **upstream**: how much more the finetuned model relies on the component's activation than
#   the old model did (what feeds the entity in).
#
# Positive = helps the correct answer. All three come from a few shared forward and backward
# passes. `canonical()` averages the items on one template whose entity slots are `X Y Z`.

# %%
from extractive_lens.scores import extractive_scores

scores = extractive_scores(
    model,
    result.delta,
    dataset.implications,
    dataset.implication_options,
    counterfactuals=COUNTERFACTUALS,
    seed=3,
)
canonical = scores.canonical()
print("canonical template tokens:", canonical["informative"].labels)
for role, c in canonical.items():
    top = ", ".join(f"{comp}@{c.labels[pos].strip()} {value:+.3g}" for comp, pos, value in c.top(3))
    print(f"{role:>11}: {top}")

# %% [markdown]
# ## 4. Heatmaps
#
# Rows: downstream, informative, upstream. Columns: the MLP of each layer, and each attention
# layer with its heads summed. x is the token of the canonical template, y the layer (0 at the
# bottom). Red helps the correct answer, blue hurts it; each row has its own colour scale,
# shared by its two panels. Hover a cell for the exact value and, for attention, its top heads.
# In the paper (OLMo-7B) first-hop facts sit in early and middle MLPs at the last entity token,
# and the downstream components at the last token in the top layers.

# %%
from extractive_lens.plots import head_drilldown, score_heatmaps

score_heatmaps(canonical, title=f"{dataset.name}: extractive scores on {MODEL}")

# %% [markdown]
# The per-head drill-down splits the attention column at one token (by default the one where
# attention matters most) into its heads: layer on y, head on x. Under grouped-query attention
# the shared key/value heads get their own columns (`KV0`, ...), never double counted.

# %%
head_drilldown(canonical, "speak")

# %% [markdown]
# ## 5. The extractive graph
#
# The top components of each role become nodes at (token, layer): upstream (green) ->
# informative (orange) -> downstream (blue), joined wherever information can flow forward from
# one to the other. Node size is the score; hover a node for all three scores.

# %%
from extractive_lens.graph import extractive_graph
from extractive_lens.plots import graph_figure

graph = extractive_graph(canonical, top_k=8)
print(graph.summary(k=3))
graph_figure(graph, title=f"{dataset.name}: extractive structure on {MODEL}")

# %% [markdown]
# ## 6. A report
#
# `report` writes one self-contained HTML file (plotly.js embedded, opens offline) with the
# settings, the verdict in words and every figure with a caption. `extractive-lens demo` (or
# `make demo`) does all of the above on first-hop and second-hop and writes such a report.

# %%
import tempfile
from pathlib import Path

from extractive_lens.report import report

path = report([result], Path(tempfile.mkdtemp()) / "report.html")
print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
