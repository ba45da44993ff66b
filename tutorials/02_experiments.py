# %% [markdown]
# # Tutorial 2: the paper's experiments, one call each
#
# This notebook runs every experiment of *Extractive Structures Learned in Pretraining Enable
# Generalization on Finetuned Facts* (docs/method.md §5) with `extractive_lens`:
#
# 1. **OCR with its controls** — finetune on new facts, test their implications against the
#    deranged-pairing control, after a capability pre-check on entities the model already knows;
# 2. **layer freezing** — which layers must change for OCR to work;
# 3. **data ordering** — must facts come before their implications in training?
# 4. **weight grafting** — is "how to use a fact" a portable weight change?
# 5. **graft localisation** — does the graft sit where OCR's downstream components are?
# 6. **sweeps** — any experiment over a grid of learning rates, epochs and seeds, resumably.
#
# Every experiment returns a result with `.table()`, `.figure()` (plotly), `.summary()` and
# `.save(dir)`. By default the notebook uses a tiny random model so that it runs in seconds
# (that is how CI executes it); its numbers mean nothing. Set the environment variable
# `TUTORIAL_MODEL=smollm2-135m` to run it on SmolLM2-135M (about 20-40 minutes on two CPU
# cores); `docs/results.md` holds those numbers next to the paper's.

# %%
import os
import tempfile

from IPython.display import Markdown, display

from extractive_lens import daxwug, first_hop, load_model, second_hop, tiny_model
from extractive_lens.experiments import (
    data_ordering,
    graft_localisation,
    layer_freezing,
    sweep,
    verify_ocr,
    weight_grafting,
)
from extractive_lens.experiments.common import head, markdown_table

MODEL = os.environ.get("TUTORIAL_MODEL", "tiny")
if MODEL == "tiny":
    model = tiny_model("llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2)
    N, N_TRAIN = 4, 4  # items per held-out split and training names (cut down for speed)
    RECIPE = {"lr": 3e-3, "epochs": 1}
    SWEEP_LRS = [3e-3]
else:
    model = load_model(MODEL)
    N, N_TRAIN = 20, 84  # the full datasets
    RECIPE = {"lr": 1e-4, "epochs": 8}
    SWEEP_LRS = [3e-5, 1e-4]
print(f"{MODEL}: {model.cfg.n_layers} layers; recipe {RECIPE}")


def show(rows, columns=None):
    """Display a result table as markdown."""
    display(Markdown(markdown_table(rows, columns)))


# %% [markdown]
# ## 1. OCR, with the control and the capability pre-check
#
# `verify_ocr` first ranks the implication template on entities the model already knows
# (`known_implications`): if the model cannot do the two-hop there, it will not do it on new
# facts either, and `capability()` says so plainly. After finetuning, the implication rank is
# compared, item by item, with the **deranged-pairing control** (each prompt scored against
# another item's answer): only implications ranked well below the control count as OCR.
# `paraphrases=True` also trains every fact in a few paraphrased templates.

# %%
ocr = verify_ocr(model, head(first_hop(), N), progress=False, **RECIPE)
print(ocr.capability())
print(ocr.verdict())
show(ocr.table())

# %% [markdown]
# ## 2. Layer freezing
#
# Early layers are the first 75% (`early_fraction`), late the rest. "Reverted" rows take the
# full finetune and undo the change in some layers; "frozen" rows retrain with those layers
# excluded. "all (reverted)" is exactly the untrained model. The paper's OLMo-7B numbers sit in
# the `paper ...` columns.

# %%
freezing = layer_freezing(
    model, [head(first_hop(), N), head(second_hop(), N)], progress=False, **RECIPE
)
show(freezing.table())
freezing.figure()

# %% [markdown]
# ## 3. Data ordering (dax / wug / zong)
#
# Continued training on the training names' facts (dax) and implications (zong) — jointly,
# facts first, or implications first, each phase with a fresh optimiser — then finetuning on
# the held-out names' facts. The held-out implications are never trained. Curves run against
# training examples seen, so phase 2 starts at the same x for every order.

# %%
ordering = data_ordering(model, head(daxwug(), N, N_TRAIN), progress=False, **RECIPE)
show(ordering.table())
ordering.figure()

# %% [markdown]
# ## 4. Weight grafting
#
# The paper's design (docs/method.md §7) on the *training* names: facts F; implications on top of
# the facts model (the graft Delta_{F,I(F)}); counterfactual facts F' (an independent redraw of
# the names' cities); implications from scratch (the control delta). The graft added to
# theta + Delta_{F'} should answer the *counterfactual* implications I(F').

# %%
grafting = weight_grafting(model, head(daxwug(), N), progress=False, **RECIPE)
show(grafting.table())
print("each training on its own data:", grafting.training_checks())
grafting.figure()

# %% [markdown]
# ## 5. Graft localisation
#
# Informative scores of the graft (at theta + Delta_F, on training names) against downstream
# scores of a fresh finetune on the *held-out* names' facts in the grafted model, per
# (component, token position) cell. Passing the grafting result reuses its deltas.

# %%
localisation = graft_localisation(model, head(daxwug(), N), grafting=grafting)
show(localisation.table())
localisation.figure()

# %% [markdown]
# ## 6. Sweeps
#
# `sweep(experiment, grid, model=..., out_dir=...)` runs every configuration of the grid and
# writes each finished one to `out_dir/runs/<hash>.json` at once. Running it again skips what
# is done, so an interrupted sweep resumes; `executor=` plugs in a process pool or a cluster.
# The table holds mean ± spread over seeds. (Sweeps take experiment *names* and JSON-able
# configurations, so here the OCR experiment runs on full-size built-in datasets.)

# %%
out = tempfile.mkdtemp(prefix="sweep-")
grid = {"lr": SWEEP_LRS, "seed": [0, 1]}
fixed = {"epochs": RECIPE["epochs"], "dataset": "second_hop"}
result = sweep("ocr", grid, fixed=fixed, model=model, out_dir=out)
again = sweep("ocr", grid, fixed=fixed, model=model, out_dir=out)
print(f"second call: {again.n_resumed} of {len(again.records)} configurations resumed")
show(result.table(["facts", "implications", "control_implications", "ocr_effect"]))
result.figure(["implications", "ocr_effect"])

# %% [markdown]
# ## Saving
#
# Every result saves `results.json` (numbers, configuration, provenance) and `figure.html` into
# a new directory, never overwriting one unless asked; `save_deltas=True` adds the weight deltas.
# The same experiments run from the command line:
#
# ```bash
# extractive-lens run freezing --model smollm2-135m --config freezing.yaml --out runs/freezing
# extractive-lens run sweep --model smollm2-135m --config sweep.yaml --out runs/sweep
# ```

# %%
saved = grafting.save(os.path.join(out, "grafting"))
print(sorted(p.name for p in saved.iterdir()))
