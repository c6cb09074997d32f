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


def test_another_sample_of_a_request_is_another_reply_and_sample_0_keeps_its_key() -> None:
    from migrator.dataset import Example
    from migrator.evaluate import Config, build_request, request_seed
    from migrator.prompts import PromptTemplate

    endpoint = Endpoint("openai/no-seed-model", "chat", api_base="http://127.0.0.1:9/v1", served_by="http://127.0.0.1:9/v1")
    template = PromptTemplate((("user", "Review: {{ review }}"),))
    example = Example("e1", {"review": "fine"}, "positive")
    seeded = Config("openai/no-seed-model", params=(("seed", request_seed(4)), ("temperature", 0.7)))
    unseeded = Config("openai/no-seed-model", params=(("temperature", 0.7),))
    first = build_request(seeded, endpoint, template, example, (), seed=4)
    # sample 0 is the request the search sent: same params, same key as before samples existed
    assert first == LLMRequest(endpoint, messages=(("user", "Review: fine"),), params=seeded.params)
    second = build_request(seeded, endpoint, template, example, (), sample=1, seed=4)
    assert dict(second.params)["seed"] == request_seed(4, 1) != request_seed(4)
    # a model that takes no seed: the sample alone keeps the replies apart in the cache
    keys = {build_request(unseeded, endpoint, template, example, (), sample=i, seed=4).cache_key() for i in range(3)}
    assert len(keys) == 3
    assert all(dict(build_request(unseeded, endpoint, template, example, (), sample=i).params) == {"temperature": 0.7} for i in range(3))
