"""migration.yaml validation: what a user sees when their spec is right, and when it is wrong."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.cli import main
from migrator.errors import InputError, SpecError
from migrator.spec import SearchSpace, TargetSpec, load_search_space, load_spec

ROWS = [{"id": "r1", "review": "great", "label": "positive"}, {"id": "r2", "review": "awful", "label": "negative"}]


def _spec_dict() -> dict[str, Any]:
    return {
        "name": "reviews",
        "app": {"model": "openai/gpt-4o-mini", "prompt_file": "prompts/prompt.yaml", "params": {"temperature": 0}},
        "dataset": {"path": "data/reviews.jsonl", "expected_field": "label", "id_field": "id"},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": ["openai/gpt-4.1-mini", {"model": "local/qwen", "api_base": "http://localhost:8080/v1"}],
        "budget": {"trials": 5, "usd": 2.5},
        "objective": "quality",
        "seed": 3,
    }


def _write(root: Path, data: dict[str, Any]) -> Path:
    """A spec folder with its dataset and prompt file; returns the spec path."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "data" / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "prompts" / "prompt.yaml").write_text("messages:\n  - role: user\n    content: 'Review: {{ review }}'\n")
    path = root / "migration.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return _write(tmp_path / "app", _spec_dict())


def test_valid_spec_loads_with_paths_relative_to_the_spec_file(
    spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(spec_path.parent.parent)  # a cwd other than the spec folder
    spec = load_spec(spec_path)

    assert spec.base_dir == spec_path.parent
    assert spec.source_file == str(spec_path)
    assert spec.resolve(spec.dataset.path) == spec_path.parent / "data" / "reviews.jsonl"
    assert spec.resolve(spec.app.prompt_file or "").read_text().startswith("messages:")
    assert spec.resolve("/abs/file.jsonl") == Path("/abs/file.jsonl")


def test_string_targets_become_target_specs_and_objective_string_becomes_tuple(spec_path: Path) -> None:
    spec = load_spec(spec_path)

    assert spec.targets == (
        TargetSpec(model="openai/gpt-4.1-mini"),
        TargetSpec(model="local/qwen", api_base="http://localhost:8080/v1"),
    )
    assert spec.objective == ("quality",)
    assert spec.budget.usd == 2.5 and spec.budget.trials == 5
    assert spec.seed == 3


def test_objective_list_is_kept_in_order(tmp_path: Path) -> None:
    data = _spec_dict() | {"objective": ["quality", "cost", "latency"]}
    assert load_spec(_write(tmp_path, data)).objective == ("quality", "cost", "latency")


def test_defaults_fill_what_the_spec_leaves_out(spec_path: Path) -> None:
    spec = load_spec(spec_path)

    assert spec.search_space == SearchSpace()
    assert (spec.dataset.split.train, spec.dataset.split.dev, spec.dataset.split.test) == (0.2, 0.5, 0.3)


def _set(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return mutate


def _drop(dotted: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


INVALID = [
    pytest.param(_set("bogus", 1), "bogus", "unknown key", id="unknown-top-level-key"),
    pytest.param(_set("budget.dollars", 1), "budget.dollars", "unknown key", id="unknown-nested-key"),
    pytest.param(_set("app.temprature", 0), "app.temprature", "unknown key", id="typo-in-app"),
    pytest.param(_set("seed", "abc"), "seed", "valid integer", id="wrong-type-seed"),
    pytest.param(_set("budget.trials", "many"), "budget.trials", "valid integer", id="wrong-type-trials"),
    pytest.param(_drop("metric"), "metric", "required field is missing", id="missing-metric"),
    pytest.param(
        _drop("dataset.expected_field"),
        "dataset.expected_field",
        "required field is missing",
        id="missing-expected-field",
    ),
    pytest.param(_set("budget.usd", -1), "budget.usd", "greater than 0", id="negative-usd"),
    pytest.param(_set("budget.calls", -5), "budget.calls", "greater than 0", id="negative-calls"),
    pytest.param(_set("budget.minutes", 0), "budget.minutes", "greater than 0", id="zero-minutes"),
    pytest.param(_set("targets", []), "targets", "at least 1", id="empty-targets"),
    pytest.param(_set("targets", ["gpt-4o"]), "targets.0.model", "provider-prefixed", id="target-without-provider"),
    pytest.param(_set("app.model", "gpt-4o-mini"), "app.model", "provider-prefixed", id="app-model-without-provider"),
    pytest.param(_set("targets", ["openai/gpt\n4o"]), "targets.0.model", "provider-prefixed", id="model-with-newline"),
    pytest.param(_set("app.model", "openai/gpt\t4o"), "app.model", "provider-prefixed", id="model-with-tab"),
    pytest.param(_set("budget.tri\nals", 1), "budget.tri\\nals", "unknown key", id="newline-in-key-stays-one-line"),
    pytest.param(
        _set("app.params", {"a\nb": [1]}), "app.params.a\\nb", "sent to the provider", id="newline-in-param-name"
    ),
    pytest.param(_set("targets", ["openai/a", "openai/a"]), "targets", "listed twice", id="duplicate-target"),
    pytest.param(
        _set("dataset.split", {"train": 0.5, "dev": 0.5, "test": 0.5}),
        "dataset.split",
        "sum to 1",
        id="split-not-summing-to-1",
    ),
    pytest.param(_set("objective", "cost"), "objective", "start with 'quality'", id="objective-without-quality"),
    pytest.param(_set("name", "has space"), "name", "pattern", id="bad-name"),
    pytest.param(
        _set("search_space", {"temperature": {"low": 1, "high": 0}}),
        "search_space.temperature",
        "low must be <= high",
        id="inverted-range",
    ),
    pytest.param(
        _set("search_space", {"demos": {"k": [2, -1]}}), "search_space.demos.k", ">= 0", id="negative-demo-count"
    ),
    pytest.param(
        _set("app.messages", [{"role": "user", "content": "x"}]), "app", "exactly one of", id="both-prompt-sources"
    ),
    pytest.param(_set("base_dir", "/etc"), "base_dir", "unknown key", id="reserved-base-dir"),
    pytest.param(_set("seed", -1), "seed", "greater than or equal to 0", id="negative-seed"),
    pytest.param(_set("seed", 2**32), "seed", "less than", id="seed-over-32-bits"),
    # app.params: what migrator interprets is checked for type and range
    pytest.param(
        _set("app.params", {"temperature": "hot"}),
        "app.params.temperature",
        "must be a number between 0 and 2, got 'hot'",
        id="temperature-not-a-number",
    ),
    pytest.param(
        _set("app.params", {"temperature": 2.5}),
        "app.params.temperature",
        "between 0 and 2, got 2.5",
        id="temperature-high",
    ),
    pytest.param(
        _set("app.params", {"temperature": float("nan")}), "app.params.temperature", "got nan", id="temperature-nan"
    ),
    pytest.param(_set("app.params", {"top_p": 7}), "app.params.top_p", "at most 1, got 7", id="top-p-high"),
    pytest.param(_set("app.params", {"top_p": 0}), "app.params.top_p", "greater than 0", id="top-p-zero"),
    pytest.param(_set("app.params", {"max_tokens": -5}), "app.params.max_tokens", ">= 1, got -5", id="max-tokens-neg"),
    pytest.param(_set("app.params", {"max_tokens": True}), "app.params.max_tokens", "got True", id="max-tokens-bool"),
    pytest.param(_set("app.params", {"max_tokens": 5.5}), "app.params.max_tokens", "integer", id="max-tokens-float"),
    pytest.param(_set("app.params", {"seed": "7"}), "app.params.seed", "integer, got '7'", id="param-seed-string"),
    pytest.param(
        _set("app.params", {"presence_penalty": -3}),
        "app.params.presence_penalty",
        "between -2 and 2",
        id="presence-low",
    ),
    pytest.param(
        _set("app.params", {"frequency_penalty": 2.1}),
        "app.params.frequency_penalty",
        "between -2 and 2",
        id="freq-high",
    ),
    pytest.param(_set("app.params", {"stop": ["\n", 3]}), "app.params.stop", "list of strings", id="stop-list-of-int"),
    pytest.param(_set("app.params", {"stop": 3}), "app.params.stop", "a string or a list", id="stop-int"),
    pytest.param(_set("app.params", {"n": 2}), "app.params.n", "must be 1", id="n-above-1"),
    pytest.param(_set("app.params", {"stream": True}), "app.params.stream", "whole replies", id="stream"),
    pytest.param(
        _set("app.params", {"model": "openai/gpt-4o"}), "app.params.model", "sets it on each call", id="param-model"
    ),
    pytest.param(_set("app.params", {"messages": "hi"}), "app.params.messages", "sets it on each call", id="messages"),
    pytest.param(
        _set("app.params", {"timeout": 3}), "app.params.timeout", "search_space.timeout_s", id="param-timeout"
    ),
    pytest.param(
        _set("app.params", {"logit_bias": {"50256": -100}}),
        "app.params.logit_bias",
        "sent to the provider",
        id="mapping",
    ),
    pytest.param(_set("app.params", {"tags": ["a"]}), "app.params.tags", "finite number, true", id="other-list"),
    pytest.param(_set("app.params", {"x": float("inf")}), "app.params.x", "got inf", id="other-inf"),
    # search ranges stay where the same params are valid
    pytest.param(
        _set("search_space", {"temperature": {"low": 0, "high": 3}}),
        "search_space.temperature",
        "between 0 and 2",
        id="temperature-range-high",
    ),
    pytest.param(
        _set("search_space", {"temperature": {"low": -0.5, "high": 1}}),
        "search_space.temperature",
        "got low=-0.5 high=1",
        id="temperature-range-negative",
    ),
    pytest.param(
        _set("search_space", {"temperature": {"low": 0, "high": float("nan")}}),
        "search_space.temperature.high",
        "finite",
        id="temperature-range-nan",
    ),
    pytest.param(
        _set("search_space", {"top_p": {"low": 0, "high": 1}}), "search_space.top_p", "above 0", id="top-p-range-zero"
    ),
    pytest.param(
        _set("search_space", {"top_p": {"low": 0.5, "high": 1.5}}),
        "search_space.top_p",
        "at most 1",
        id="top-p-range-high",
    ),
    pytest.param(
        _set("search_space", {"max_tokens": {"choices": [64, 0]}}),
        "search_space.max_tokens.choices.1",
        "greater than or equal to 1",
        id="max-tokens-choice-zero",
    ),
    # the proposer, as a model id or an endpoint
    pytest.param(
        _set("search_space", {"prompt": {"proposer": "gpt-4o"}}),
        "search_space.prompt.proposer.model",
        "provider-prefixed",
        id="proposer-without-provider",
    ),
    pytest.param(
        _set("search_space", {"prompt": {"proposer": {"model": "openai/qwen", "apibase": "http://x"}}}),
        "search_space.prompt.proposer.apibase",
        "unknown key",
        id="proposer-unknown-key",
    ),
    pytest.param(
        _set("search_space", {"prompt": {"proposer": {"model": "openai/qwen", "mode": "batch"}}}),
        "search_space.prompt.proposer.mode",
        "'chat' or 'completion'",
        id="proposer-bad-mode",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), INVALID)
def test_invalid_spec_names_file_and_field_on_one_line(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str, fragment: str
) -> None:
    data = _spec_dict()
    mutate(data)
    path = _write(tmp_path, data)

    with pytest.raises(SpecError) as info:
        load_spec(path)

    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert fragment in message
    assert "\n" not in message
    assert "pydantic" not in message and "validation error" not in message.lower() and "Value error" not in message


def test_spec_error_is_an_input_error_and_a_value_error(tmp_path: Path) -> None:
    data = _spec_dict() | {"seed": "x"}
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, data))
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
    assert info.value.file == str(tmp_path / "migration.yaml")


def test_api_key_env_holding_a_key_is_rejected_without_echoing_the_key(tmp_path: Path) -> None:
    secret = "sk-proj-abcdefghijklmnopqrstuvwx0123"
    data = _spec_dict() | {"targets": [{"model": "openai/gpt-4.1-mini", "api_key_env": secret}]}

    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, data))

    assert "targets.0.api_key_env" in str(info.value)
    assert "NAME of an environment variable" in str(info.value)
    assert secret not in str(info.value)


def test_valid_params_load_exactly_as_written(tmp_path: Path) -> None:
    params = {
        "temperature": 0,
        "top_p": 1,
        "max_tokens": 1,
        "seed": -3,
        "presence_penalty": -2,
        "frequency_penalty": 2.0,
        "stop": ["\n", "###"],
        "n": 1,
        "stream": False,
        "user": "app-1",
        "logprobs": True,
        "reasoning_effort": None,
    }
    data = _spec_dict()
    data["app"]["params"] = params

    loaded = load_spec(_write(tmp_path, data)).app.params

    assert loaded == params
    assert type(loaded["temperature"]) is int  # not coerced: the spec hash of existing specs is unchanged


def test_a_string_stop_and_the_temperature_bounds_are_accepted(tmp_path: Path) -> None:
    data = _spec_dict()
    data["app"]["params"] = {"temperature": 2, "stop": "END"}
    data["search_space"] = {"temperature": {"low": 0, "high": 2}, "top_p": {"low": 0.1, "high": 1.0}}

    spec = load_spec(_write(tmp_path, data))

    assert spec.app.params == {"temperature": 2, "stop": "END"}
    assert spec.search_space.top_p is not None and spec.search_space.top_p.low == 0.1


def test_the_first_bad_param_is_named_on_one_line(tmp_path: Path) -> None:
    data = _spec_dict()
    data["app"]["params"] = {"temperature": 0.2, "top_p": 7, "max_tokens": -5}

    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, data))

    assert (
        str(info.value)
        == f"{tmp_path / 'migration.yaml'}: app.params.top_p: must be a number greater than 0 and at most 1, got 7"
    )


def test_a_bad_param_exits_2_with_one_line_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _spec_dict()
    data["app"]["params"] = {"temperature": "hot"}
    path = _write(tmp_path, data)

    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-tracking"])

    err = capsys.readouterr().err
    assert code == 2
    assert err == f"migrator: error: {path}: app.params.temperature: must be a number between 0 and 2, got 'hot'\n"
    assert not (tmp_path / "out").exists()


def test_proposer_is_a_target_given_as_an_id_or_an_endpoint(tmp_path: Path) -> None:
    endpoint = {
        "model": "openai/qwen",
        "api_base": "http://localhost:8080/v1",
        "api_key_env": "QWEN_KEY",
        "mode": "chat",
    }
    as_id = _spec_dict() | {"search_space": {"prompt": {"proposer": "openai/gpt-4.1", "rewrites": 2}}}
    as_endpoint = _spec_dict() | {"search_space": {"prompt": {"proposer": endpoint, "rewrites": 2}}}

    assert load_spec(_write(tmp_path / "a", as_id)).search_space.prompt.proposer == TargetSpec(model="openai/gpt-4.1")
    assert load_spec(_write(tmp_path / "b", as_endpoint)).search_space.prompt.proposer == TargetSpec(**endpoint)
    assert load_spec(_write(tmp_path / "c", _spec_dict())).search_space.prompt.proposer is None


def test_proposer_endpoint_in_a_search_space_file(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        "prompt:\n  rewrites: 1\n  proposer: {model: openai/qwen, api_base: 'http://localhost:8080/v1', mode: completion}\n"
    )
    spec = load_spec(_write(tmp_path, _spec_dict() | {"search_space": "space.yaml"}))

    assert spec.search_space.prompt.proposer == TargetSpec(
        model="openai/qwen", api_base="http://localhost:8080/v1", mode="completion"
    )


def test_proposer_api_key_env_holding_a_key_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "sk-proj-abcdefghijklmnopqrstuvwx0123"
    proposer = {"model": "openai/gpt-4.1", "api_key_env": secret}
    path = _write(tmp_path, _spec_dict() | {"search_space": {"prompt": {"proposer": proposer}}})

    with pytest.raises(SpecError) as info:
        load_spec(path)

    assert str(info.value).startswith(f"{path}: search_space.prompt.proposer.api_key_env: must be the NAME")
    assert secret not in str(info.value)


def test_spec_hash_of_a_proposer_id_is_as_before_and_an_endpoint_changes_it(tmp_path: Path) -> None:
    def proposer(value: Any) -> dict[str, Any]:
        return _spec_dict() | {"search_space": {"prompt": {"proposer": value, "rewrites": 2}}}

    as_id = load_spec(_write(tmp_path / "a", proposer("openai/gpt-4.1")))
    as_mapping = load_spec(_write(tmp_path / "b", proposer({"model": "openai/gpt-4.1"})))
    self_hosted = load_spec(_write(tmp_path / "c", proposer({"model": "openai/gpt-4.1", "api_base": "http://h:1/v1"})))

    # the hash is over this dump; a proposer id dumps as the bare id, as before the mapping form
    assert as_id.model_dump(mode="json")["search_space"]["prompt"]["proposer"] == "openai/gpt-4.1"
    assert as_id.spec_hash() == as_mapping.spec_hash()
    assert self_hosted.spec_hash() != as_id.spec_hash()
    assert self_hosted.model_dump(mode="json")["search_space"]["prompt"]["proposer"]["api_base"] == "http://h:1/v1"


def test_api_key_env_with_a_variable_name_is_accepted(tmp_path: Path) -> None:
    data = _spec_dict() | {"targets": [{"model": "openai/gpt-4.1-mini", "api_key_env": "MY_OPENAI_KEY"}]}
    assert load_spec(_write(tmp_path, data)).targets[0].api_key_env == "MY_OPENAI_KEY"


@pytest.mark.parametrize(
    ("where", "setup"),
    [
        ("dataset.path", lambda root: (root / "data" / "reviews.jsonl").unlink()),
        ("app.prompt_file", lambda root: (root / "prompts" / "prompt.yaml").unlink()),
    ],
)
def test_missing_referenced_file_names_the_field_and_the_missing_path(
    tmp_path: Path, where: str, setup: Callable[[Path], None]
) -> None:
    path = _write(tmp_path, _spec_dict())
    setup(tmp_path)

    with pytest.raises(SpecError) as info:
        load_spec(path)

    message = str(info.value)
    assert message.startswith(f"{path}: {where}: ")
    assert "not found" in message
    missing = tmp_path / ("data/reviews.jsonl" if where == "dataset.path" else "prompts/prompt.yaml")
    assert str(missing) in message


def test_search_space_file_is_loaded_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "small.yaml").write_text("temperature: {low: 0.0, high: 0.4}\ndemos: {k: [0, 1]}\n")
    spec = load_spec(_write(tmp_path, _spec_dict() | {"search_space": "spaces/small.yaml"}))

    assert spec.search_space.temperature is not None and spec.search_space.temperature.high == 0.4
    assert spec.search_space.demos.k == (0, 1)


def test_missing_search_space_file_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec_dict() | {"search_space": "spaces/nope.yaml"})

    with pytest.raises(SpecError) as info:
        load_spec(path)

    assert str(info.value).startswith(f"{path}: search_space: ")
    assert str(tmp_path / "spaces" / "nope.yaml") in str(info.value)


def test_invalid_search_space_file_names_that_file_and_field(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("pruner: fastest\n")

    with pytest.raises(SpecError) as info:
        load_search_space(space)

    assert str(info.value).startswith(f"{space}: pruner: ")


def test_missing_spec_file_and_bad_yaml_are_one_line_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\napp: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(info.value).startswith(f"{bad}: line ")
    assert "\n" not in str(info.value)

    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(bad)


def test_spec_hash_is_stable_when_the_folder_moves(tmp_path: Path) -> None:
    first = _write(tmp_path / "here", _spec_dict())
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(first.parent, moved)

    a, b = load_spec(first), load_spec(moved / "migration.yaml")

    assert a.base_dir != b.base_dir
    assert a.spec_hash() == b.spec_hash()
    assert len(a.spec_hash()) == 16


@pytest.mark.parametrize(
    "change",
    [
        _set("seed", 4),
        _set("targets", ["openai/gpt-4.1-mini"]),
        _set("metric.labels", ["negative", "positive", "neutral"]),
        _set("budget.trials", 6),
        _set("app.params", {"temperature": 0.7}),
        _set("dataset.split", {"train": 0.1, "dev": 0.6, "test": 0.3}),
    ],
)
def test_spec_hash_changes_with_result_relevant_fields(
    tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    before = load_spec(_write(tmp_path / "a", _spec_dict()))
    data = copy.deepcopy(_spec_dict())
    change(data)
    after = load_spec(_write(tmp_path / "b", data))

    assert before.spec_hash() != after.spec_hash()


def test_spec_hash_ignores_tracking_and_description(tmp_path: Path) -> None:
    before = load_spec(_write(tmp_path / "a", _spec_dict()))
    data = _spec_dict() | {
        "description": "now documented",
        "tracking": {"uri": "file:///tmp/mlruns", "experiment": "x"},
    }
    after = load_spec(_write(tmp_path / "b", data))

    assert before.spec_hash() == after.spec_hash()


def test_spec_hash_changes_when_the_prompt_file_is_edited(spec_path: Path) -> None:
    before = load_spec(spec_path).spec_hash()
    (spec_path.parent / "prompts" / "prompt.yaml").write_text(
        "messages:\n  - role: user\n    content: 'Classify this review: {{ review }}'\n"
    )
    assert load_spec(spec_path).spec_hash() != before


# -- fleet defaults and targets: auto ---------------------------------------------------------

TODAY = __import__("datetime").date(2026, 12, 1)  # litellm 1.110.2's map judged on a fixed day


def _fleet_app(tmp_path: Path, app: dict[str, Any], fleet: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """An app folder under tmp_path/fleet with the given spec changes, and the fleet's fleet.yaml."""
    data = _spec_dict()
    for key, value in app.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    spec = _write(tmp_path / "fleet" / "app", data)
    fleet_file = tmp_path / "fleet" / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet or {}))
    return spec, fleet_file


@pytest.fixture
def provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys for the hosted providers the auto tests pick (never sent: nothing is called)."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, "sk-test-not-a-real-key-0000")


def _load(spec: Path, fleet_file: Path, **kwargs: Any) -> Any:
    return load_spec(spec, defaults=yaml.safe_load(fleet_file.read_text()), defaults_file=fleet_file, today=TODAY, **kwargs)


def test_fleet_defaults_sit_under_the_apps_own_settings(tmp_path: Path) -> None:
    fleet = {"budget": {"trials": 30, "calls": 500}, "seed": 9, "search_space": "spaces/shared.yaml", "storage": "sqlite:///s.db"}
    spec, fleet_file = _fleet_app(tmp_path, {"search_space": {"chunk_size": 4}}, fleet)
    (fleet_file.parent / "spaces").mkdir()
    (fleet_file.parent / "spaces" / "shared.yaml").write_text("sampler: tpe\nchunk_size: 20\n")

    loaded = _load(spec, fleet_file)

    assert (loaded.budget.trials, loaded.budget.usd, loaded.budget.calls) == (5, 2.5, 500)  # merged key by key
    assert loaded.seed == 3  # the app's
    assert loaded.storage == "sqlite:///s.db"  # the fleet's
    assert (loaded.search_space.sampler, loaded.search_space.chunk_size) == ("tpe", 4)  # file relative to fleet.yaml


@pytest.mark.parametrize(
    ("fleet", "where"),
    [
        ({"budget": {"calls": 0}}, "budget.calls"),
        ({"catalog": ["gpt-4o"]}, "catalog.0.model"),
        ({"search_space": "missing.yaml"}, "search_space"),
    ],
)
def test_a_bad_default_names_fleet_yaml(tmp_path: Path, fleet: dict[str, Any], where: str, provider_keys: None) -> None:
    spec, fleet_file = _fleet_app(tmp_path, {"targets": "auto"}, fleet)
    with pytest.raises(SpecError) as raised:
        _load(spec, fleet_file)
    assert str(raised.value).startswith(f"{fleet_file}: {where}: ")


def test_targets_auto_are_the_successor_then_the_catalogs_live_models(tmp_path: Path, provider_keys: None) -> None:
    catalog = ["openai/gpt-4o-mini-2024-07-18", "azure/gpt-4o-2024-08-06", "anthropic/claude-sonnet-4-5"]
    spec, fleet_file = _fleet_app(
        tmp_path, {"app": _spec_dict()["app"] | {"model": "openai/gpt-4-0613"}, "targets": "auto"}, {"catalog": catalog}
    )

    loaded = _load(spec, fleet_file)

    # gpt-4-0613 retired on 2026-10-23 for gpt-5.6-sol; gpt-4o-mini retires within 90 days, claude-sonnet-4-5 has
    assert [t.model for t in loaded.targets] == ["openai/gpt-5.6-sol", "azure/gpt-4o-2024-08-06"]
    assert loaded.catalog[0].model == "openai/gpt-4o-mini-2024-07-18"


def test_resolved_targets_hash_as_if_written_and_the_catalog_does_not_count(tmp_path: Path, provider_keys: None) -> None:
    app = _spec_dict()["app"] | {"model": "openai/gpt-4-0613"}
    auto, fleet_file = _fleet_app(tmp_path / "a", {"app": app, "targets": "auto"}, {"catalog": ["azure/gpt-4o-2024-08-06"]})
    written = _write(tmp_path / "b", _spec_dict() | {"app": app, "targets": ["openai/gpt-5.6-sol", "azure/gpt-4o-2024-08-06"]})
    with_catalog = _write(tmp_path / "c", yaml.safe_load(written.read_text()) | {"catalog": ["openai/gpt-5.1"], "deprecations": "d.yaml"})

    assert _load(auto, fleet_file).spec_hash() == load_spec(written).spec_hash() == load_spec(with_catalog).spec_hash()
    fleet_file.write_text(yaml.safe_dump({"catalog": ["openai/gpt-5.1"]}))  # a changed catalog is a new study
    assert _load(auto, fleet_file).spec_hash() != load_spec(written).spec_hash()


def test_targets_auto_reads_the_deprecations_of_the_fleet_unless_told_another(tmp_path: Path, provider_keys: None) -> None:
    app = _spec_dict()["app"] | {"model": "anthropic/claude-3-5-sonnet-20240620"}  # undated in litellm's map
    spec, fleet_file = _fleet_app(tmp_path, {"app": app, "targets": "auto"}, {"deprecations": "deprecations.yaml"})
    (fleet_file.parent / "deprecations.yaml").write_text(
        "- {model: anthropic/claude-3-5-sonnet-20240620, deprecation_date: 2025-10-22, successor: anthropic/claude-opus-4-1}\n"
    )
    other = tmp_path / "other.yaml"
    other.write_text("- {model: anthropic/claude-3-5-sonnet-20240620, successor: anthropic/claude-haiku-4-5}\n")

    assert [t.model for t in _load(spec, fleet_file).targets] == ["anthropic/claude-opus-4-1"]
    assert [t.model for t in _load(spec, fleet_file, deprecations=other).targets] == ["anthropic/claude-haiku-4-5"]
    assert _load(spec, fleet_file).deprecations_file() == fleet_file.parent / "deprecations.yaml"


def test_targets_auto_leaves_out_a_hosted_model_whose_key_is_not_set_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = {"model": "openai/qwen-local", "api_base": "http://127.0.0.1:8080/v1"}  # self-hosted: needs no key
    catalog = [local, "azure/gpt-4o-2024-08-06"]  # azure may sign in without a key: never judged
    spec, fleet_file = _fleet_app(
        tmp_path, {"app": _spec_dict()["app"] | {"model": "openai/gpt-4-0613"}, "targets": "auto"}, {"catalog": catalog}
    )

    with caplog.at_level("WARNING", logger="migrator"):
        loaded = _load(spec, fleet_file)

    assert [t.model for t in loaded.targets] == ["openai/qwen-local", "azure/gpt-4o-2024-08-06"]
    assert f"{spec}: targets: auto leaves out openai/gpt-5.6-sol: OPENAI_API_KEY is not set" in caplog.messages
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0000")
    assert _load(spec, fleet_file).targets[0].model == "openai/gpt-5.6-sol"
    # migrator check makes no call: it keeps what auto picks
    monkeypatch.delenv("OPENAI_API_KEY")
    assert _load(spec, fleet_file, unreachable="keep").targets[0].model == "openai/gpt-5.6-sol"


def test_targets_auto_that_can_reach_no_model_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATOR_TODAY", "2026-12-01")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    app = _spec_dict()["app"] | {"model": "openai/gpt-4-0613"}  # retired, for openai/gpt-5.6-sol
    path = _write(tmp_path, _spec_dict() | {"app": app, "targets": "auto"})

    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-tracking"])

    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"migrator: error: {path}: targets: auto found no model it can reach: openai/gpt-5.6-sol needs "
        "OPENAI_API_KEY, which is not set"
    )
    assert not (tmp_path / "out").exists()


def test_targets_auto_without_a_legacy_model_names_app_model(tmp_path: Path) -> None:
    app = {k: v for k, v in _spec_dict()["app"].items() if k != "model"}
    spec = _write(tmp_path, _spec_dict() | {"app": app, "targets": "auto"})
    with pytest.raises(SpecError, match=r"app\.model: required field is missing"):
        load_spec(spec, today=TODAY)


def test_targets_auto_with_no_model_left_exits_2_naming_the_file_and_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATOR_TODAY", "2026-12-01")
    app = _spec_dict()["app"] | {"model": "anthropic/claude-3-haiku-20240307"}  # no date, no successor
    path = _write(tmp_path, _spec_dict() | {"app": app, "targets": "auto", "catalog": ["openai/gpt-4o-mini-2024-07-18"]})

    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-tracking"])

    assert code == 2
    assert capsys.readouterr().err == (
        f"migrator: error: {path}: targets: auto found no model: legacy anthropic/claude-3-haiku-20240307 has no "
        "known successor and the catalog's models are all retired or retiring\n"
    )
    assert not (tmp_path / "out").exists()
