"""Forward-call arguments that differ between transformers releases (the project supports 4.45 and newer).

transformers 5.24 renamed the KV-cache argument and output field `past_key_values` to `cache` (the old name warns
and goes in 5.40); `logits_to_keep` exists from 4.50 on. The engine asks the model's own signature instead of
pinning a version.
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def _params(forward) -> frozenset[str]:
    return frozenset(inspect.signature(forward).parameters)


def forward_params(model) -> frozenset[str]:
    """Names the model's forward accepts (a PEFT wrapper answers for the model it wraps)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _params(type(base).forward)


def cache_kwargs(model, cache: Any) -> dict[str, Any]:
    """{'cache': cache} or {'past_key_values': cache}, whichever this transformers takes."""
    return {"cache" if "cache" in forward_params(model) else "past_key_values": cache}


def keep_kwargs(model, keep: int) -> dict[str, int]:
    """{'logits_to_keep': keep} where supported (logits for the last `keep` positions only), else {}."""
    return {"logits_to_keep": keep} if "logits_to_keep" in forward_params(model) else {}


def output_cache(out) -> Any:
    """The KV cache a forward returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@contextmanager
def quiet_peft():
    """peft (0.21) reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model: a FutureWarning
    on every load that says nothing to our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
