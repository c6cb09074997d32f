"""Per-model rules, checked on real model ids from litellm's shipped map (read offline)."""

from __future__ import annotations

import pytest

from migrator.models import model_info

SAMPLING = {"temperature", "top_p"}


@pytest.mark.parametrize(
    "model",
    [
        "anthropic/claude-sonnet-4-5",  # a reasoning model that takes temperature
        "gemini/gemini-2.5-flash",  # the same
        "openai/gpt-4o-mini-2024-07-18",
        "openai/gpt-4.1",
        "openai/gpt-5-chat-latest",
    ],
)
def test_models_that_take_a_temperature_are_searched_over_it(model: str) -> None:
    info = model_info(model)
    assert info.known, f"{model} is not in litellm's map any more"
    assert info.accepts >= SAMPLING and "max_tokens" in info.accepts


@pytest.mark.parametrize("model", ["openai/o1", "openai/o3-mini", "openai/o4-mini", "openai/gpt-5", "openai/gpt-5-mini", "azure/o3-mini"])
def test_openai_reasoning_models_get_no_temperature_or_top_p(model: str) -> None:
    info = model_info(model)
    assert info.known, f"{model} is not in litellm's map any more"
    assert not SAMPLING & info.accepts and "max_tokens" in info.accepts


@pytest.mark.parametrize(
    ("model", "seeded"),
    [
        ("openai/gpt-4o-mini-2024-07-18", True),
        ("gemini/gemini-2.5-flash", True),
        ("anthropic/claude-sonnet-4-5", False),  # Anthropic's API has no seed
        ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", False),
    ],
)
def test_a_request_seed_goes_only_to_providers_that_take_one(model: str, seeded: bool) -> None:
    assert ("seed" in model_info(model).accepts) is seeded


def test_self_hosted_and_local_models_take_every_sampling_param_and_a_seed() -> None:
    for info in (model_info("openai/my-vllm", api_base="http://127.0.0.1:9/v1"), model_info("local/gemma-3-270m")):
        assert {"temperature", "top_p", "max_tokens", "seed"} <= info.accepts
        assert info.cost(1000, 1000) == 0.0


def test_prices_and_retirement_dates_come_from_litellms_map() -> None:
    info = model_info("openai/gpt-4o-mini-2024-07-18")
    assert info.input_cost_per_token > 0 and info.output_cost_per_token > info.input_cost_per_token
    assert info.deprecation_date is not None


def test_a_base_model_is_called_on_the_completion_endpoint_unless_told_otherwise() -> None:
    from migrator.migration import endpoint_for
    from migrator.models import default_mode
    from migrator.spec import TargetSpec

    assert default_mode("local/gemma-3-270m") == "completion"
    assert default_mode("local/qwen2.5-coder-0.5b-instruct") == default_mode("openai/gpt-4o-mini") == "chat"
    assert endpoint_for(TargetSpec(model="local/gemma-3-270m"), {}).mode == "completion"
    assert endpoint_for(TargetSpec(model="local/gemma-3-270m", mode="chat"), {}).mode == "chat"
    assert endpoint_for(TargetSpec(model="local/gemma-3-270m"), {}, space_mode="chat").mode == "chat"
