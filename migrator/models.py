"""What each model accepts and costs, from litellm's model map plus our overrides.

The search offers a model only the parameters it accepts, requests carry a ``seed``
only where the provider takes one, and cost accounting uses the same price table.
The rules, in one place:

- the parameters are those litellm lists for the model (``get_supported_openai_params``)
  among temperature, top_p, max_tokens and seed; max_tokens always;
- OpenAI's reasoning models (the o-series, gpt-5, gpt-5-mini, ...) take no temperature
  and no top_p other than the default. litellm lists temperature for them (it drops a
  default one), but not top_p, and it marks them ``supports_reasoning``: both together
  are the rule. Other reasoning models (claude-sonnet-4-5, gemini-2.5-flash) keep
  their temperature;
- self-hosted OpenAI-compatible servers (llama.cpp, vLLM) and the local models take
  all four and cost nothing per token;
- a base model (the local gemma-3-270m) is called on the completion endpoint unless the
  target or the search space says otherwise; every other model on chat.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

__all__ = ["ModelInfo", "default_mode", "family", "import_dspy", "import_litellm", "is_local", "litellm_id", "local_name", "model_info"]

_SAMPLING = ("temperature", "top_p", "max_tokens", "seed")
# Self-hosted OpenAI-compatible servers (llama.cpp, vLLM) take the usual sampling params
# and cost nothing per token; the fake provider has a price so cost accounting is tested.
_OVERRIDES: dict[str, dict[str, Any]] = {
    "local/": {"accepts": _SAMPLING, "input_cost": 0.0, "output_cost": 0.0},
    "fake/": {"accepts": _SAMPLING, "input_cost": 1e-6, "output_cost": 2e-6},
}


@dataclass(frozen=True)
class ModelInfo:
    model: str
    accepts: frozenset[str]
    input_cost_per_token: float
    output_cost_per_token: float
    deprecation_date: date | None = None
    successor: str | None = None
    known: bool = True

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_cost_per_token + completion_tokens * self.output_cost_per_token


# Base models answer on the completion endpoint; a chat template makes them ramble.
_COMPLETION_BY_DEFAULT = frozenset({"local/gemma-3-270m"})


def default_mode(model: str) -> Literal["chat", "completion"]:
    """The endpoint a model is called on when neither the target nor the search space says."""
    return "completion" if model in _COMPLETION_BY_DEFAULT else "chat"


def family(model: str) -> str:
    """The family a model belongs to, for per-family prompt rewrites (e.g. 'openai/gpt-4o')."""
    provider, _, name = model.partition("/")
    stem = name.split(":")[0]
    for sep in ("-20", "-0", "-1", "-2", "-3"):
        head, found, _ = stem.partition(sep)
        if found and head:
            stem = head
            break
    return f"{provider}/{stem}"


def import_litellm() -> Any:
    """litellm, configured to stay offline and quiet (no price-map download, no telemetry).

    The one place migrator imports litellm: its price map is read here, its calls are made
    by :mod:`migrator.llm`. litellm downloads the map at import unless told not to;
    migrator runs offline on the map litellm ships (set the variable to "False" to opt in).
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def import_dspy() -> Any:
    """dspy, with its disk cache under migrator's cache directory unless the user chose one.

    The one place migrator imports dspy (the proposer's programs, the judge's prompt).
    dspy reads ``DSPY_CACHEDIR`` when it is first imported, so it is set here, just before,
    and never at import of migrator.
    """
    os.environ.setdefault("DSPY_CACHEDIR", os.path.join(os.path.expanduser("~"), ".cache", "migrator", "dspy"))
    import dspy

    return dspy


def litellm_id(name: str) -> str | None:
    """A model name as a provider's API (and its logs) give it, as litellm's id: gpt-4o-mini -> openai/gpt-4o-mini.

    An id with a provider prefix is kept; a bare name litellm's map does not know is None.
    """
    if "/" in name:
        return name
    entry = import_litellm().model_cost.get(name) or {}
    provider = entry.get("litellm_provider")
    if not provider:
        return None
    return f"{'openai' if provider == 'text-completion-openai' else provider}/{name}"


def is_local(model: str) -> bool:
    """Whether a model id names one of the packaged local models (``local/<name>``)."""
    return model.startswith("local/")


def local_name(model: str) -> str:
    """The packaged model's name in a ``local/<name>`` id."""
    return model.removeprefix("local/")


def _litellm_info(model: str) -> ModelInfo:
    litellm = import_litellm()
    provider, _, name = model.partition("/")
    # the full id first: azure/gpt-4o and gemini/gemini-2.5-flash have entries of their own,
    # with their provider's retirement dates, besides OpenAI's gpt-4o and Vertex's gemini-2.5-flash
    entry = litellm.model_cost.get(model) or litellm.model_cost.get(name) or {}
    try:
        supported = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider) or []
    except Exception:  # litellm raises assorted errors for providers it cannot map
        supported = []
    accepts = {p for p in _SAMPLING if p in supported or p == "max_tokens"}
    if entry.get("supports_reasoning") and "top_p" not in supported:
        accepts -= {"temperature", "top_p"}
    deprecation = entry.get("deprecation_date")
    try:
        deprecation_date = date.fromisoformat(deprecation) if deprecation else None
    except ValueError:
        deprecation_date = None
    return ModelInfo(
        model=model,
        accepts=frozenset(accepts),
        input_cost_per_token=float(entry.get("input_cost_per_token") or 0.0),
        output_cost_per_token=float(entry.get("output_cost_per_token") or 0.0),
        deprecation_date=deprecation_date,
        successor=entry.get("successor_model"),
        known=bool(entry),
    )


@functools.lru_cache(maxsize=512)
def model_info(model: str, *, api_base: str | None = None) -> ModelInfo:
    """Capabilities and prices of a model id; a custom endpoint accepts the usual params."""
    for prefix, override in _OVERRIDES.items():
        if model.startswith(prefix):
            return ModelInfo(model, frozenset(override["accepts"]), override["input_cost"], override["output_cost"])
    if api_base and model.startswith(("openai/", "text-completion-openai/")):
        # A self-hosted OpenAI-compatible server: usual params, no per-token price, and no
        # need to import litellm (seconds) just to learn that.
        return ModelInfo(model, frozenset(_SAMPLING), 0.0, 0.0, known=False)
    info = _litellm_info(model)
    if api_base and not info.known:
        return ModelInfo(model, frozenset(_SAMPLING), 0.0, 0.0, known=False)
    return info
