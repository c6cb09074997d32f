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
