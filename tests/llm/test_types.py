"""The boundary objects of a call: what a request is keyed by."""

from __future__ import annotations

from migrator.llm import Endpoint, LLMRequest


def test_the_cache_key_is_who_serves_the_model_not_where() -> None:
    from migrator.migration import endpoint_for
    from migrator.spec import TargetSpec

    def key(target: TargetSpec, api_bases: dict[str, str]) -> str:
        return LLMRequest(endpoint_for(target, api_bases), messages=(("user", "x"),)).cache_key()

    # a managed local server gets a new port each run: its weights say who answers
    local = TargetSpec(model="local/qwen2.5-coder-0.5b-instruct")
    port_1 = key(local, {local.model: "http://127.0.0.1:1/v1"})
    assert port_1 == key(local, {local.model: "http://127.0.0.1:2/v1"})
    # a self-hosted model id says nothing of the server behind it
    vllm_a = key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.1:8000/v1"), {})
    vllm_b = key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.2:8000/v1"), {})
    assert vllm_a != vllm_b
    assert vllm_a == key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.1:8000/v1/"), {})
    # a hosted model is its provider's: the same key as ever
    hosted = LLMRequest(Endpoint("openai/gpt-4o-mini"), messages=(("user", "x"),))
    assert hosted.cache_key() == key(TargetSpec(model="openai/gpt-4o-mini"), {})
