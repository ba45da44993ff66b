"""Shared fixtures: tiny random models (the bridge code path of real ones), built once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from extractive_lens.models import tiny_model  # noqa: E402

# --------------------------------------------------------------------------- precision
#
# The one rule for every numerical comparison in this suite: two computations of the same
# quantity may differ by at most
#
#     HEADROOM * eps * scale
#
# where ``eps`` is the unit roundoff of the lowest precision the computation really runs in
# (``working_eps``: a "float64" Llama still computes its RMSNorm and rotary in float32), and
# ``scale`` is the magnitude of the terms the computation adds up, not of its result (a result
# that cancels, like a difference of two slopes, keeps the rounding error of its terms).
# HEADROOM covers the accumulated rounding of the longest chain in our tiny models (a few
# reductions over <= 256 elements, ~sqrt(n) growth each) and differs between BLAS kernels and
# thread counts, so a test written this way passes on any machine with 1 or 2 threads.

HEADROOM = 256.0


class _LowestFloat(TorchFunctionMode):
    """Records the lowest-precision floating dtype any torch op produces while active."""

    def __init__(self) -> None:
        super().__init__()
        self.eps = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.eps = max(self.eps, torch.finfo(t.dtype).eps)
        return out


_EPS_CACHE: dict[int, float] = {}


def working_eps(model) -> float:
    """Unit roundoff of the lowest float precision used anywhere in ``model``'s forward."""
    if id(model) not in _EPS_CACHE:
        ids = torch.tensor([[1, 2, 3, 4]])
        spy = _LowestFloat()
        with torch.no_grad(), spy:
            model(ids)
        _EPS_CACHE[id(model)] = spy.eps
    return _EPS_CACHE[id(model)]


def assert_within_precision(
    actual, expected, *, eps: float, scale, extra=0.0, msg: str = ""
) -> None:
    """``|actual - expected| <= HEADROOM * eps * scale + extra`` elementwise (the one rule).

    ``extra`` is an error the comparison has by construction, derived by the caller (the
    truncation and rounding of a finite difference, ``central_difference``), never a fudge.
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    scale = torch.as_tensor(scale, dtype=torch.float64)
    error = (actual.double() - expected.double()).abs()
    bound = HEADROOM * eps * scale + torch.as_tensor(extra, dtype=torch.float64)
    excess = error - bound
    assert excess.max() <= 0, (
        f"{msg} differs by {error.max().item():.3g}, beyond HEADROOM {HEADROOM:g} * eps "
        f"{eps:.3g} * scale (+ extra): bound {bound.flatten()[excess.argmax()].item():.3g} there"
    )


def central_difference(f, h: float, eps: float, wide: float = 0.1):
    """``(f(h) - f(-h)) / 2h`` and a bound on its error from the true derivative at 0.

    The bound is rounding, ``HEADROOM * eps * max|f| / h``, plus truncation, ``h^2 / 6`` times
    the third derivative (doubled for safety), estimated from a stencil at ``+-wide, +-2 wide``,
    wide enough that its own rounding is negligible.
    """
    plus, minus = f(h), f(-h)
    third = (f(2 * wide) - 2 * f(wide) + 2 * f(-wide) - f(-2 * wide)) / (2 * wide**3)
    rounding = HEADROOM * eps * torch.maximum(plus.abs(), minus.abs()) / h
    return (plus - minus) / (2 * h), rounding + 2 * h**2 / 6 * third.abs()


def score_terms(scores, components=None):
    """Per example, the summed |score| over positions (and the given components, default all):
    the magnitude at which sums of those scores round."""
    if components is not None:
        return sum(scores.component(c).abs().sum(1) for c in components)
    parts = [scores.mlp, scores.heads] + ([scores.kv_heads] if scores.kv_heads is not None else [])
    return sum(p.abs().flatten(1).sum(1) for p in parts)


@pytest.fixture(scope="session")
def precision():
    """The precision rule as a fixture: ``precision.eps(model)``, ``precision.check(...)``."""

    class Precision:
        eps = staticmethod(working_eps)
        check = staticmethod(assert_within_precision)
        central_difference = staticmethod(central_difference)
        terms = staticmethod(score_terms)
        headroom = HEADROOM
        fp32 = torch.finfo(torch.float32).eps

    return Precision


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (opt in with ``pytestmark``): on two busy cores one
    thread is several times faster than two fighting threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_llama():
    """2-layer Llama with grouped-query attention (4 query heads, 2 K/V heads)."""
    return tiny_model("llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=0)


@pytest.fixture(scope="session")
def tiny_mha():
    """2-layer Llama with plain multi-head attention."""
    return tiny_model("llama", n_layers=2, d_model=64, n_heads=4, seed=1)


@pytest.fixture(scope="session")
def tiny_gpt2():
    return tiny_model("gpt2", n_layers=2, d_model=64, n_heads=4, seed=0)


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny(request, tiny_llama, tiny_gpt2):
    """Each tiny architecture in turn."""
    return tiny_llama if request.param == "llama" else tiny_gpt2


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (slow tests only)."""
    from extractive_lens.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture
def notebook_kernel(tmp_path, monkeypatch):
    """A kernel running this interpreter, with the tutorials' environment: offline, one thread,
    the tiny model, a private cache. Returns the kernel's name (see ``tests/notebooks.py``)."""
    from notebooks import kernelspec

    name = kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    monkeypatch.setenv("EXTRACTIVE_LENS_TUTORIAL_MODEL", "tiny")
    monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TUTORIAL_MODEL", raising=False)
    return name
