"""Ratio of the batched scores' time to the 3-forward + 2-backward floor, for side-by-side runs of
two checkouts of this library (e.g. before and after a change) on the same machine.

Run from a checkout's root; it times *that* checkout's ``extractive_lens`` (the working directory
goes first on ``sys.path``), alternating (a) and (c) within each repeat, best of N each::

    cd /path/to/old && python /path/to/new/benchmarks/ratio_to_floor.py smol 6
    cd /path/to/new && python benchmarks/ratio_to_floor.py smol 6

``tiny`` (a 2-layer random Llama with GQA) or ``smol`` (SmolLM2-135M), then the repeats. It only
uses names that have existed since before issue 10, so older checkouts run it too.
"""

import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]

import torch  # noqa: E402
from scores_speed import floor, random_delta  # noqa: E402

from extractive_lens.data import first_hop, first_token_ids  # noqa: E402
from extractive_lens.metrics import answer_index, encode  # noqa: E402
from extractive_lens.models import load_model, tiny_model  # noqa: E402
from extractive_lens.scores import extractive_scores  # noqa: E402


def main() -> None:
    which, repeats = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(2)
    if which == "tiny":
        model = tiny_model("llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2)
    else:
        model = load_model("smollm2-135m")
    data = first_hop()
    items, options = list(data.implications)[:20], list(data.implication_options)
    delta = random_delta(model)
    batch = encode(model.tokenizer, items, with_answers=False)
    answers = answer_index(items, options)
    option_ids = torch.tensor(first_token_ids(model.tokenizer, options))
    fns = {
        "floor": lambda: floor(model, batch, answers, option_ids),
        "ours": lambda: extractive_scores(
            model, delta, items, options, counterfactuals=10, seed=3, batch_size=32
        ),
    }
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    import extractive_lens

    print(
        extractive_lens.__file__,
        which,
        {k: round(v, 4) for k, v in best.items()},
        f"ratio {best['ours'] / best['floor']:.3f}",
    )


if __name__ == "__main__":
    main()
