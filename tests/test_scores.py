"""Scores against independent computations on tiny random models (docs/method.md §3).

- informative: per layer (and per head) equal to the directional derivative of R along the
  component's delta (central finite differences in float64), complete (sum = <grad R, delta> over
  owned parameters, the rest reported), exact where R is linear in the weight;
- downstream: equal to the exact intervention where R is linear in the output, converging to it
  as the delta shrinks elsewhere;
- upstream: equal to finite differences of the patched-output difference theta' vs theta;
- batched == one at a time, padding-invariant, seed-reproducible, equal to the per-example
  reference (paper-style) implementation.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from _shared import perturbed
from _shared import target as shared_target
from conftest import assert_within_precision, working_eps

from extractive_lens.components import Component, components, unowned_parameters
from extractive_lens.data import Example, first_token_ids
from extractive_lens.delta import WeightDelta
from extractive_lens.metrics import answer_index, encode, forward
from extractive_lens.models import named_parameters, tiny_model
from extractive_lens.scores import (
    downstream_scores,
    extractive_scores,
    informative_scores,
    upstream_scores,
)
from extractive_lens.scores.passes import score_target, target_forward
from extractive_lens.scores.reference import reference_scores

TEMPLATE = "The people in the city {} is from speak"
ENTITIES = ["Grace Miller", "Tom Li", "Anna Kowalczyk-Brown", "Ravi Shankar", "Lea Wu"]
ANSWERS = ["French", "German", "Spanish", "Italian", "Greek"]
OPTIONS = ["French", "German", "Spanish", "Italian", "Greek", "Dutch"]
EXAMPLES = [Example.from_template(TEMPLATE, e, a) for e, a in zip(ENTITIES, ANSWERS, strict=True)]


def random_delta(model, seed=0, scale=0.02, blocks_only=True, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    params = named_parameters(model)
    return WeightDelta(
        {
            n: scale * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            for n, p in params.items()
            if not blocks_only or (".layers." in n or ".h." in n)
        },
        dtype=dtype,
    )


def target(model, examples=EXAMPLES, options=OPTIONS):
    """R per example, computed directly from the logits."""
    return shared_target(model, examples, options)


@contextlib.contextmanager
def linear_final_norm(model):
    """Make the final norm the identity, so that R is linear in the last layer's outputs."""
    seen = {}

    def grab(x, hook):
        seen["x"] = x

    def give(x, hook):
        return seen["x"]

    with model.hooks(fwd_hooks=[("ln_final.hook_in", grab), ("ln_final.hook_out", give)]):
        yield


@pytest.fixture(scope="module")
def fp64_models():
    return {
        "llama": tiny_model(
            "llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=2, dtype=torch.float64
        ),
        "gpt2": tiny_model("gpt2", n_layers=2, d_model=64, n_heads=4, seed=2, dtype=torch.float64),
    }


# --------------------------------------------------------------------------- informative


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_informative_equals_directional_derivative(fp64_models, arch, precision):
    """Per MLP / attention layer / single head, the position-summed informative score is
    d/d alpha R(theta + alpha Delta_C) at 0 (central finite differences, float64)."""
    model = fp64_models[arch]
    delta = random_delta(model, seed=1, scale=0.05, dtype=torch.float64)
    scores = informative_scores(model, delta, EXAMPLES, OPTIONS)
    assert scores.mlp.dtype == torch.float64
    per_example = scores.sum_positions()
    groups = []
    for layer in range(2):
        groups.append(
            (components(model, layers=[layer], kinds=["mlp"]), per_example["mlp"][:, layer])
        )
        attn = components(model, layers=[layer], kinds=["head", "kv_head"])
        groups.append((attn, scores.sum_heads()[:, :, layer].sum(1)))
    groups.append(([Component(1, "head", 2)], per_example["heads"][:, 1, 2]))
    if arch == "llama":
        groups.append(([Component(0, "kv_head", 1)], per_example["kv_heads"][:, 0, 1]))
    # Llama's RMSNorm and rotary run in fp32 even in a float64 model (working_eps sees it): a
    # larger step balances the finite difference's rounding against its truncation.
    eps = precision.eps(model)
    step = 1e-3 if eps > 1e-10 else 1e-5
    for comps, ours in groups:
        d_c = delta.restrict(components=comps, model=model)

        def r_along(alpha, d_c=d_c):
            with perturbed(model, d_c, alpha):
                return target(model)

        fd, fd_error = precision.central_difference(r_along, step, eps)
        precision.check(
            ours,
            fd,
            eps=eps,
            scale=precision.terms(scores, comps),
            extra=fd_error,
            msg=str([str(x) for x in comps]),
        )


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_informative_is_complete(request, name, precision):
    """total() = <grad R, delta> over owned parameters; the rest is reported, not hidden."""
    model = request.getfixturevalue(name)
    delta = random_delta(model, seed=2, blocks_only=False)
    scores = informative_scores(model, delta, EXAMPLES, OPTIONS)
    params = named_parameters(model)
    names = list(delta)
    batch = encode(model.tokenizer, EXAMPLES, with_answers=False)
    ids = torch.tensor(first_token_ids(model.tokenizer, OPTIONS))
    r = score_target(forward(model, batch), batch, answer_index(EXAMPLES, OPTIONS), ids)
    grads = torch.autograd.grad(r.sum(), [params[n] for n in names], allow_unused=True)
    unowned = set(unowned_parameters(model))
    dots = {
        n: float((g * delta[n]).sum()) if g is not None else 0.0
        for n, g in zip(names, grads, strict=True)
    }
    covered = sum(v for n, v in dots.items() if n not in unowned)
    uncovered = sum(v for n, v in dots.items() if n in unowned)
    sizes = {
        n: float((g * delta[n]).abs().sum()) if g is not None else 0.0
        for n, g in zip(names, grads, strict=True)
    }
    eps = precision.eps(model)
    owned_terms = sum(v for n, v in sizes.items() if n not in unowned)
    scale = owned_terms + float(precision.terms(scores).sum())
    precision.check(scores.total(), covered, eps=eps, scale=scale, msg="total")
    cov = scores.coverage
    assert set(cov.uncovered) == unowned & set(names)
    unowned_terms = sum(v for n, v in sizes.items() if n in unowned)
    precision.check(cov.uncovered_informative, uncovered, eps=eps, scale=2 * unowned_terms)
    norms = {n: float(delta[n].double().pow(2).sum()) for n in names}
    share = sum(norms[n] for n in unowned) / sum(norms.values())
    precision.check(cov.uncovered_share, share, eps=precision.fp32, scale=share)
    assert 0 < cov.uncovered_share < 1


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_informative_exact_when_linear(request, name, precision):
    """With the final norm made linear, R is linear in the last layer's W_out: the informative
    score equals the exact change R(theta + Delta) - R(theta), even for a large delta, and it
    sits on the last prompt position only."""
    model = request.getfixturevalue(name)
    w_out = (
        "model.layers.1.mlp.down_proj.weight"
        if "llama" in name
        else "transformer.h.1.mlp.c_proj.weight"
    )
    delta = WeightDelta({w_out: random_delta(model, seed=3, scale=0.5)[w_out]})
    with linear_final_norm(model):
        scores = informative_scores(model, delta, EXAMPLES, OPTIONS)
        before = target(model)
        with delta.applied(model):
            after = target(model)
    # after - before cancels: it rounds at the size of R itself, the score at its terms
    scale = after.abs() + before.abs() + precision.terms(scores)
    eps = precision.eps(model)
    precision.check(scores.total(per_example=True), after - before, eps=eps, scale=scale)
    lasts = [len(t) - 1 for t in scores.tokens]
    on_last = scores.mlp[torch.arange(len(lasts)), lasts, 1]
    precision.check(on_last, after - before, eps=eps, scale=scale)
    assert scores.heads.abs().max() == 0


def test_paper_mlp_flag_doubles_w_out_and_drops_w_in(tiny_llama, precision):
    delta = random_delta(tiny_llama, seed=4)
    paper = informative_scores(tiny_llama, delta, EXAMPLES, OPTIONS, paper_mlp=True)
    down = WeightDelta({n: t for n, t in delta.items() if "down_proj" in n})
    only_down = informative_scores(tiny_llama, down, EXAMPLES, OPTIONS)
    eps = precision.eps(tiny_llama)
    precision.check(paper.mlp, 2 * only_down.mlp, eps=eps, scale=2 * only_down.mlp.abs().max())
    correct = informative_scores(tiny_llama, delta, EXAMPLES, OPTIONS)
    precision.check(paper.heads, correct.heads, eps=eps, scale=correct.heads.abs().max())
    assert not torch.allclose(paper.mlp, correct.mlp)


# --------------------------------------------------------------------------- downstream


def component_output(model, c: Component, examples=EXAMPLES):
    """C's output under the current weights, on the right-padded batch."""
    return _run_patched(model, c, examples, None)[1]


def _run_patched(model, c, examples, replace=None, input_value=None, capture_input=False):
    """Forward with (optionally) C's layer input or C's output replaced; returns R, y_C, z_C."""
    layer = c.layer
    out_hook = {
        "mlp": f"blocks.{layer}.mlp.out.hook_out",
        "head": f"blocks.{layer}.attn.o.hook_in",
    }[c.kind]
    in_hook = f"blocks.{layer}.ln2.hook_in" if c.kind == "mlp" else f"blocks.{layer}.ln1.hook_out"
    seen = {}

    def at_output(x, hook):
        if replace is not None:
            x = x.clone()
            if c.kind == "mlp":
                x[:] = replace
            else:
                x[:, :, c.head] = replace
        seen["y"] = x[:, :, c.head].clone() if c.kind == "head" else x.clone()
        return x

    def at_input(x, hook):
        seen["z"] = x.clone()
        return input_value if input_value is not None else x

    batch = encode(model.tokenizer, examples, with_answers=False)
    ids = torch.tensor(first_token_ids(model.tokenizer, OPTIONS))
    with torch.no_grad(), model.hooks(fwd_hooks=[(out_hook, at_output), (in_hook, at_input)]):
        r = target_forward(model, batch, answer_index(examples, OPTIONS), ids)
    return r, seen["y"], seen["z"]


def exact_downstream(model, delta, c, with_scale=False):
    """R[y_C <- y~_C] - R with y~_C = f_C(z'_C; W_C), all by separate forwards (and, if asked,
    |R[y_C <- y~_C]| + |R|: the size at which that difference rounds)."""
    with delta.applied(model):
        _, _, z_new = _run_patched(model, c, EXAMPLES)
    _, y_tilde, _ = _run_patched(model, c, EXAMPLES, input_value=z_new)
    r0, _, _ = _run_patched(model, c, EXAMPLES)
    r1, _, _ = _run_patched(model, c, EXAMPLES, replace=y_tilde)
    return (r1 - r0, r1.abs() + r0.abs()) if with_scale else r1 - r0


def test_downstream_exact_when_linear(tiny_llama, precision):
    """With the final norm linear, R is linear in the last MLP's output: D is exact."""
    delta = random_delta(tiny_llama, seed=5, scale=0.05)
    c = Component(1, "mlp")
    with linear_final_norm(tiny_llama):
        scores = downstream_scores(tiny_llama, delta, EXAMPLES, OPTIONS)
        exact, size = exact_downstream(tiny_llama, delta, c, with_scale=True)
    assert exact.abs().max() > 1e-4
    scale = size + precision.terms(scores, [c])
    precision.check(scores.component(c).sum(1), exact, eps=precision.eps(tiny_llama), scale=scale)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_downstream_converges_to_exact_intervention(fp64_models, arch):
    model = fp64_models[arch]
    base = random_delta(model, seed=6, scale=0.05, dtype=torch.float64)
    errors = []
    for scale in (0.1, 0.01):
        delta = base * scale
        scores = downstream_scores(model, delta, EXAMPLES, OPTIONS)
        rel = []
        for c in (Component(0, "mlp"), Component(1, "head", 3)):
            exact = exact_downstream(model, delta, c)
            ours = scores.component(c).sum(1)
            rel.append(float((ours - exact).norm() / exact.norm()))
        errors.append(max(rel))
    assert errors[1] < 0.02
    assert errors[1] < errors[0] / 4  # first-order: the error shrinks with the delta


def test_downstream_zero_when_only_unowned_weights_change(tiny_gpt2):
    """If the delta only touches what no component owns, y~_C = y'_C and D = <g, y' - y>."""
    delta = random_delta(tiny_gpt2, seed=7, blocks_only=False)
    unowned = set(unowned_parameters(tiny_gpt2))
    delta = WeightDelta({n: t for n, t in delta.items() if n in unowned})
    scores = downstream_scores(tiny_gpt2, delta, EXAMPLES, OPTIONS)
    informative = informative_scores(tiny_gpt2, delta, EXAMPLES, OPTIONS)
    assert informative.total() == 0
    c = Component(1, "mlp")
    y0 = component_output(tiny_gpt2, c)
    with delta.applied(tiny_gpt2):
        y1 = component_output(tiny_gpt2, c)
    assert scores.component(c).abs().max() > 0
    assert (y1 - y0).abs().max() > 0


# --------------------------------------------------------------------------- upstream


def _patched_output_r(model, c, examples, add):
    """R with ``add`` added to C's output (all positions); differentiable in ``add``."""
    out_hook = {
        "mlp": [f"blocks.{c.layer}.mlp.out.hook_out"],
        "head": [f"blocks.{c.layer}.attn.o.hook_in"],
        "kv_head": [f"blocks.{c.layer}.attn.k.hook_out", f"blocks.{c.layer}.attn.v.hook_out"],
    }[c.kind]

    def make(k):
        def hook(x, hook):
            x = x.clone()
            part = add if c.kind != "kv_head" else add[..., k * x.shape[-1] : (k + 1) * x.shape[-1]]
            if c.kind == "mlp":
                x += part
            else:
                x[:, :, c.head] += part
            return x

        return hook

    batch = encode(model.tokenizer, examples, with_answers=False)
    ids = torch.tensor(first_token_ids(model.tokenizer, OPTIONS))
    with model.hooks(fwd_hooks=[(h, make(k)) for k, h in enumerate(out_hook)]):
        return target_forward(model, batch, answer_index(examples, OPTIONS), ids)


def _outputs(model, c, examples):
    hooks = {
        "mlp": [f"blocks.{c.layer}.mlp.out.hook_out"],
        "head": [f"blocks.{c.layer}.attn.o.hook_in"],
        "kv_head": [f"blocks.{c.layer}.attn.k.hook_out", f"blocks.{c.layer}.attn.v.hook_out"],
    }[c.kind]
    seen = {}

    def make(h):
        def hook(x, hook):
            seen[h] = x.detach().clone() if c.kind == "mlp" else x[:, :, c.head].detach().clone()

        return hook

    batch = encode(model.tokenizer, examples, with_answers=False)
    with torch.no_grad(), model.hooks(fwd_hooks=[(h, make(h)) for h in hooks]):
        forward(model, batch)
    return torch.cat([seen[h] for h in hooks], dim=-1)


def _manual_alignment(tok, item: Example, cf: Example) -> list[int]:
    """Prefix -> prefix, suffix -> suffix, entity right-aligned (extra tokens -> first)."""
    prefix = len(tok(TEMPLATE.split("{}")[0].rstrip(), add_special_tokens=False).input_ids)
    suffix = len(tok(TEMPLATE.split("{}")[1], add_special_tokens=False).input_ids)
    n_i = len(tok(item.prompt, add_special_tokens=False).input_ids)
    n_j = len(tok(cf.prompt, add_special_tokens=False).input_ids)
    e_i, e_j = n_i - prefix - suffix, n_j - prefix - suffix
    out = list(range(prefix))
    out += [max(prefix + e_j - (e_i - k), prefix) for k in range(e_i)]
    out += [prefix + e_j + s for s in range(suffix)]
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_upstream_equals_patched_derivative(fp64_models, arch, precision):
    """U_C = d/d beta at 0 of [R_theta'(y_C + beta v) - R_theta(y_C + beta v)], v = y_C - y*_C,
    with y* the aligned output on the counterfactual items (aligned by hand), or 0. The derivative
    is taken by autograd through an added perturbation, independently of the scores' hooks."""
    model = fp64_models[arch]
    tok = model.tokenizer
    delta = random_delta(model, seed=8, scale=0.05, dtype=torch.float64)
    table = torch.tensor([[2, 1], [4, 4], [0, 3], [1, 2], [3, 0]])
    scores = upstream_scores(model, delta, EXAMPLES, OPTIONS, counterfactuals=table)
    zero = upstream_scores(model, delta, EXAMPLES, OPTIONS, counterfactuals=None)
    cs = [Component(1, "head", 1)]
    cs.append(Component(0, "kv_head", 1) if arch == "llama" else Component(0, "mlp"))

    def gradient(c, i, v):  # dR/dy_C, taken through an added perturbation of y_C
        bump = torch.zeros_like(v, requires_grad=True)
        return torch.autograd.grad(_patched_output_r(model, c, [EXAMPLES[i]], bump)[0], bump)[0]

    for c in cs:
        ys = {i: _outputs(model, c, [ex])[0] for i, ex in enumerate(EXAMPLES)}
        for i in (0, 2):
            star = (
                sum(
                    ys[j][_manual_alignment(tok, EXAMPLES[i], EXAMPLES[j])]
                    for j in table[i].tolist()
                )
                / 2
            )
            for ref, y_star in ((scores, star), (zero, torch.zeros_like(star))):
                v = (ys[i] - y_star)[None]
                with delta.applied(model):
                    g_new = gradient(c, i, v)
                g_old = gradient(c, i, v)
                expected = ((g_new - g_old) * v).sum()
                # the score cancels between the two models: its error scales with the terms
                terms = (g_new * v).abs().sum() + (g_old * v).abs().sum()
                precision.check(
                    ref.component(c)[i].sum(),
                    expected,
                    eps=precision.eps(model),
                    scale=terms,
                    msg=f"{c}, item {i}",
                )


# --------------------------------------------------------------------------- batching & seeds


def _assert_same(a, b, eps):
    """The same scores computed in another order: every entry of a role's tensor rounds at the
    scale of that tensor (its activations and gradients are shared), so the largest |value| is
    the scale. Downstream and upstream are differences of activations (y - y~, g - g'), which
    round at the activations' size: measured on these models, at most ~10 eps of the largest
    score, well inside the rule's headroom."""
    for role in ("informative", "downstream", "upstream"):
        x, y = getattr(a, role), getattr(b, role)
        for kind in ("mlp", "heads", "kv_heads"):
            if getattr(x, kind) is not None:
                same, ref = getattr(x, kind), getattr(y, kind)
                assert_within_precision(
                    same, ref, eps=eps, scale=ref.abs().max(), msg=f"{role}.{kind}"
                )


def test_batched_equals_one_at_a_time(tiny_llama):
    delta = random_delta(tiny_llama, seed=9)
    items = EXAMPLES[:4]
    together = extractive_scores(tiny_llama, delta, items, OPTIONS, counterfactuals=2)
    single = extractive_scores(tiny_llama, delta, items, OPTIONS, counterfactuals=2, batch_size=1)
    _assert_same(together, single, eps=working_eps(tiny_llama))


def test_padding_changes_no_score(tiny_gpt2):
    delta = random_delta(tiny_gpt2, seed=10)
    short, long = EXAMPLES[1], EXAMPLES[2]
    n = len(tiny_gpt2.tokenizer(short.prompt).input_ids)
    assert n < len(tiny_gpt2.tokenizer(long.prompt).input_ids)
    for fn in (informative_scores, downstream_scores):
        alone = fn(tiny_gpt2, delta, [short], OPTIONS)
        padded = fn(tiny_gpt2, delta, [long, short], OPTIONS)
        assert padded.mlp.shape[1] > n
        eps = working_eps(tiny_gpt2)
        for kind in ("mlp", "heads"):
            ref = getattr(alone, kind)[0]
            scale = ref.abs().max()
            assert_within_precision(getattr(padded, kind)[1, :n], ref, eps=eps, scale=scale)
        assert padded.mlp[1, n:].abs().max() == 0 and padded.heads[1, n:].abs().max() == 0


def test_seed_reproduces_exactly(tiny_mha):
    delta = random_delta(tiny_mha, seed=11)
    a = extractive_scores(tiny_mha, delta, EXAMPLES, OPTIONS, counterfactuals=4, seed=5)
    b = extractive_scores(tiny_mha, delta, EXAMPLES, OPTIONS, counterfactuals=4, seed=5)
    c = extractive_scores(tiny_mha, delta, EXAMPLES, OPTIONS, counterfactuals=4, seed=6)
    assert torch.equal(a.upstream.counterfactuals, b.upstream.counterfactuals)
    _assert_same(a, b, eps=0.0)  # same seed: bit-identical
    assert not torch.equal(a.upstream.counterfactuals, c.upstream.counterfactuals)
    assert a.informative.kv_heads is None  # multi-head attention: heads own their K/V


def test_counterfactuals_share_template_and_differ(tiny_mha):
    delta = random_delta(tiny_mha, seed=12)
    other = [
        Example.from_template("{} lives in", e, a) for e, a in zip(ENTITIES, ANSWERS, strict=True)
    ]
    mixed = EXAMPLES + other
    s = upstream_scores(tiny_mha, delta, mixed, OPTIONS, counterfactuals=6)
    for i, row in enumerate(s.counterfactuals.tolist()):
        for j in row:
            assert mixed[j].template == mixed[i].template
            assert mixed[j].answer != mixed[i].answer


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_batched_equals_paper_style_reference(request, name):
    """The per-example, per-pair reference (5 forward+backward passes per pair, TransformerLens
    backward hooks, parameter gradients formed) gives the same numbers."""
    model = request.getfixturevalue(name)
    delta = random_delta(model, seed=13)
    items = EXAMPLES[:3] if name == "tiny_llama" else EXAMPLES[1:3]
    table = torch.tensor([[1], [2], [0]][: len(items)]) if name == "tiny_llama" else [[1], [0]]
    ours = extractive_scores(model, delta, items, OPTIONS, counterfactuals=table)
    ref = reference_scores(model, delta, items, OPTIONS, counterfactuals=torch.as_tensor(table))
    for role in ("informative", "downstream", "upstream"):
        mine = getattr(ours, role)
        for i, per in enumerate(ref[role]):
            n = len(mine.tokens[i])
            for kind, value in per.items():
                scale = getattr(mine, kind).abs().max()
                assert_within_precision(
                    getattr(mine, kind)[i, :n], value, eps=working_eps(model), scale=scale
                )


def test_bf16_model_accumulates_in_fp32(tiny_llama):
    model = tiny_model(
        "llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=0, dtype=torch.bfloat16
    )
    delta = random_delta(tiny_llama, seed=14)
    low = informative_scores(model, delta, EXAMPLES[:2], OPTIONS)
    full = informative_scores(tiny_llama, delta, EXAMPLES[:2], OPTIONS)
    assert low.mlp.dtype == torch.float32
    assert float((low.mlp - full.mlp).norm() / full.mlp.norm()) < 0.1


@pytest.mark.slow
def test_smollm2_scores_complete_and_agree_across_batch_sizes(smollm2):
    """On the real model: informative completeness against autograd, batching invariance."""
    delta = random_delta(smollm2, seed=15, scale=1e-4)
    items = EXAMPLES[:3]
    a = extractive_scores(smollm2, delta, items, OPTIONS, counterfactuals=2)
    b = extractive_scores(smollm2, delta, items, OPTIONS, counterfactuals=2, batch_size=1)
    # fp32 through 30 layers and different batch shapes; downstream and upstream are built on
    # small differences (y~ - y, g' - g), so their rounding is relative to the activations and
    # gradients, not to the score.
    for role, tol in (("informative", 1e-3), ("downstream", 1e-2), ("upstream", 1e-2)):
        for kind in ("mlp", "heads", "kv_heads"):
            x, y = getattr(getattr(a, role), kind), getattr(getattr(b, role), kind)
            assert (x - y).abs().max() <= tol * y.abs().max() + 1e-8, (role, kind)
    params = named_parameters(smollm2)
    names = list(delta)
    batch = encode(smollm2.tokenizer, items, with_answers=False)
    ids = torch.tensor(first_token_ids(smollm2.tokenizer, OPTIONS))
    r = score_target(forward(smollm2, batch), batch, answer_index(items, OPTIONS), ids).sum()
    grads = torch.autograd.grad(r, [params[n] for n in names])
    unowned = set(unowned_parameters(smollm2))
    dots = {n: float((g * delta[n]).sum()) for n, g in zip(names, grads, strict=True)}
    expected = sum(v for n, v in dots.items() if n not in unowned)
    assert float(a.informative.total()) == pytest.approx(expected, rel=1e-3)
    uncovered = sum(v for n, v in dots.items() if n in unowned)
    assert a.coverage.uncovered_informative == pytest.approx(uncovered, rel=1e-3, abs=1e-6)
    assert a.informative.kv_heads.shape[-1] == 3  # SmolLM2: 9 query heads, 3 K/V heads


def test_upstream_pool_spilled_to_disk_gives_the_same_scores(tiny_llama, monkeypatch):
    """The item pool keeps small runs in memory and spills beyond its budget: same numbers."""
    import extractive_lens.scores.upstream as upstream

    delta = random_delta(tiny_llama, seed=16)
    in_memory = upstream_scores(tiny_llama, delta, EXAMPLES, OPTIONS, counterfactuals=2, seed=1)
    monkeypatch.setattr(upstream, "POOL_MEMORY", 0)
    spilled = upstream_scores(tiny_llama, delta, EXAMPLES, OPTIONS, counterfactuals=2, seed=1)
    for kind in ("mlp", "heads", "kv_heads"):
        assert torch.equal(getattr(in_memory, kind), getattr(spilled, kind)), kind
    pool = upstream.ItemPool(memory=10)
    small, big = torch.arange(2.0), torch.arange(6.0).reshape(2, 3)
    pool.put(0, "y", small)  # 8 bytes: held
    pool.put(1, "y", big)  # 24 more: spilled
    assert pool.file is not None and (0, "y") in pool.held and (1, "y") in pool.index
    assert torch.equal(pool.get(0, "y"), small) and torch.equal(pool.get(1, "y"), big)
    pool.close()
