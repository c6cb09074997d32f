"""Generated projects, as users write them: `migrator run` answers every one.

Hypothesis writes a spec, a dataset and a prompt (valid, or broken the ways people break
them) into a folder and runs the CLI's ``main`` in-process on the fake provider. Every
run must end in exit 0 (a winner), 2 (bad input: one stderr line naming a file, and no
summary or winner written) or 3 (a budget ran out), never in a traceback. Where the
generator knows it broke something, exit 2 is required and the line must say where.

Examples are derandomized and the example database is off, so every machine runs the
same cases (for one Hypothesis version: pyproject.toml pins it); a failure prints the
generated project.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from migrator.cli import main
from migrator.errors import SpecError
from migrator.spec import load_spec
from migrator.testing import base_spec, make_sentiment_rows

ROWS = make_sentiment_rows(12)
SPEC = "migration.yaml"
DATA = "reviews.jsonl"
PRODUCED = ("winner.yaml", "summary.json", "report.html")

# Targets that answer. (fake/down and unknown fake ids fail every call, which ends a run
# with exit 1, "no trial completed": a verdict, but not one of the outcomes checked here.)
HEALTHY = ("fake/oracle", "fake/weak", "fake/fewshot", "fake/hot", "fake/chatty", "fake/echo", "fake/shaky@0.001")

# Found by these strategies and fixed (each ended in a traceback): seeds of 42949 and
# more (Optuna's sampler seed passed 2**32 - 1); a recursive macro or loop, `truncate(-1)`,
# `dictsort` and `xmlattr` on a string while rendering; `{{ 2 ** 100000 }}`, which Jinja2
# folds while parsing.

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Draw = st.DrawFn


@dataclass
class Project:
    """A folder to write: the spec, files beside it, and what the generator broke.

    ``broken`` holds "file: where" prefixes; when it is not empty the run must exit 2
    with a line naming one of them, or one of ``may_fail`` (problems an edit can cause
    that are found later, such as a split that leaves too few rows).
    """

    spec: dict[str, Any]
    files: dict[str, str | bytes] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    may_fail: list[str] = field(default_factory=list)

    def write(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        spec_path = root / SPEC
        spec_path.write_text(yaml.safe_dump(self.spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return spec_path


def _jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _project() -> Project:
    """A valid, quick project: 12 rows, 2 trials, no retries."""
    spec = base_spec(budget={"trials": 2}, search_space={"demos": {"k": [0, 2]}, "max_retries": 0, "chunk_size": 10})
    return Project(spec, {DATA: _jsonl(ROWS)})


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def _shown(key: str) -> str:
    """A key as an error line shows it: control characters escaped, so the line stays one."""
    return key if key.isprintable() else repr(key)[1:-1]


def _run(project: Project, root: Path) -> None:
    """Run the project and check what a user would see."""
    spec_path = project.write(root)
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["run", str(spec_path), "--out", str(out), "--quiet", "--no-tracking"])
    err = stderr.getvalue()
    event(f"exit {code}")
    assert code in (0, 2, 3), err
    assert "Traceback" not in err + stdout.getvalue()
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"migrator: error: {root}/"), lines[0]
        assert not [name for name in PRODUCED if (out / name).exists()], "bad input left outputs behind"
        if project.broken:
            message = lines[0].replace(f"{root}/", "")
            named = [where for where in project.broken + project.may_fail if f"error: {where}" in message]
            assert named, (project.broken, lines[0])
        return
    assert not project.broken, f"accepted though broken at {project.broken}"
    if code == 0:
        winner = yaml.safe_load((out / "winner.yaml").read_text(encoding="utf-8"))
        targets = [t if isinstance(t, str) else t["model"] for t in project.spec["targets"]]
        assert winner["model"] in targets
        assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["winner"]["model"] == winner["model"]
        assert (out / "report.html").is_file()
    else:
        assert "budget" in err, err
        assert not (out / "winner.yaml").exists()


# -- values ------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.floats(-5, 5),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0, 2.0]),
    _TEXT,
)
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(_TEXT, _SCALARS, max_size=2))

# what migrator itself sets on each call
_CALL_ARGUMENTS = ("model", "messages", "prompt", "timeout", "num_retries", "api_base", "base_url", "api_key")
_PARAM_NAMES = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "n",
    "stream",
    "model",
    "messages",
    "timeout",
    "user",
    "logprobs",
    "reasoning_effort",
)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param_valid(name: str, value: Any) -> bool:
    """The documented contract of app.params, written independently of migrator.spec."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    if name == "temperature":
        return _finite(value) and 0 <= value <= 2
    if name == "top_p":
        return _finite(value) and 0 < value <= 1
    if name == "max_tokens":
        return integer and value >= 1
    if name == "seed":
        return integer
    if name in ("presence_penalty", "frequency_penalty"):
        return _finite(value) and -2 <= value <= 2
    if name == "stop":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))
    if name == "n":
        return integer and value == 1
    if name == "stream":
        return value is False
    if name in _CALL_ARGUMENTS:
        return False
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def _good_param(name: str) -> st.SearchStrategy[Any]:
    good = {
        "temperature": st.floats(0, 2) | st.sampled_from([0, 1, 2]),
        "top_p": st.floats(0.01, 1),
        "max_tokens": st.integers(1, 64),
        "seed": st.integers(-(2**40), 2**40),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "stop": _TEXT | st.lists(_TEXT, max_size=3),
        "n": st.just(1),
        "stream": st.just(False),
    }
    if name in good:
        return good[name]
    if name in _CALL_ARGUMENTS:
        return _VALUES  # no value is valid
    return _SCALARS.filter(lambda v: _param_valid(name, v))


@st.composite
def _params(draw: Draw) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(_PARAM_NAMES) | _TEXT, max_size=3, unique=True))
    return {n: draw(_good_param(n) if draw(st.booleans()) else _VALUES) for n in names}


# -- specs: each edit returns where it broke the spec, or nothing ---------------


def _edit_params(draw: Draw, spec: dict[str, Any]) -> list[str]:
    params = draw(_params())
    _set(spec, "app.params", params)
    return [f"app.params.{_shown(name)}" for name, value in params.items() if not _param_valid(name, value)]


def _edit_unknown_key(draw: Draw, spec: dict[str, Any]) -> list[str]:
    section = draw(
        st.sampled_from(
            ["", "app", "dataset", "dataset.split", "metric", "budget", "search_space", "search_space.demos"]
        )
    )
    key = draw(st.sampled_from(["temprature", "dollars", "labelz", "Seed", "trails", "ünknown", "two\nlines"]))
    where = f"{section}.{key}".lstrip(".")
    _set(spec, where, draw(_SCALARS))
    return [_shown(where)]


_WRONG = [
    ("budget.trials", "many"),
    ("budget.trials", 0),
    ("budget.finalists", 0),
    ("budget.usd", -1),
    ("seed", "abc"),
    ("seed", -1),
    ("seed", 2**32),
    ("seed", 1.5),
    ("name", ""),
    ("name", "has space"),
    ("dataset.expected_field", 5),
    ("dataset.input_fields", "review"),
    ("dataset.split", "80/20"),
    ("metric.labels", "positive"),
    ("metric.tolerance", math.nan),
    ("targets", "fake/weak"),
    ("targets", []),
    ("app", "fake/oracle"),
    ("app.model", "oracle"),
    ("app.messages", []),
    ("app.api_key_env", "sk-live-123"),
    ("search_space.chunk_size", 0),
    ("search_space.timeout_s", math.nan),
    ("search_space.sampler", "grid"),
    ("search_space.pruner", "fastest"),
    ("search_space.demos.k", []),
    ("search_space.demos.strategies", ["closest"]),
    ("search_space.prompt.rewrites", -1),
    ("search_space.prompt.proposer", "gpt-4o"),
    ("search_space.prompt.proposer", {"model": "fake/proposer", "api_key_env": "sk-123-abc"}),
    ("search_space.prompt.proposer", {"model": "fake/proposer", "endpoint": "http://x"}),
    ("search_space.models", ["fake/oracle"]),
    ("objective", ["cost"]),
    ("objective", ["quality", "quality"]),
    ("objective", "speed"),
]


def _edit_wrong_value(draw: Draw, spec: dict[str, Any]) -> list[str]:
    where, value = draw(st.sampled_from(_WRONG))
    _set(spec, where, value)
    return [where]


_NICE_SPLITS = [(0.2, 0.5, 0.3), (0.0, 0.5, 0.5), (0.25, 0.25, 0.5), (0.9, 0.05, 0.05)]


def _edit_split(draw: Draw, spec: dict[str, Any]) -> list[str]:
    nums = st.floats(-0.5, 1.5) | st.sampled_from([0.0, 1.0, math.nan])
    train, dev, test = draw(st.sampled_from(_NICE_SPLITS) | st.tuples(nums, nums, nums))
    spec["dataset"]["split"] = {"train": train, "dev": dev, "test": test}
    valid = 0 <= train < 1 and 0 < dev < 1 and 0 < test < 1 and abs(train + dev + test - 1) <= 1e-6
    # a valid split of too few rows is bad input too (dataset.split), but not a spec error
    return [] if valid else ["dataset.split"]


_METRIC_NAMES = [
    "label",
    "exact",
    "f1",
    "numeric",
    "json_fields",
    "python:operator:eq",
    "bleu",
    "python:nope",
    "python:no_such_mod:f",
]


def _edit_metric(draw: Draw, spec: dict[str, Any]) -> list[str]:
    name = draw(st.sampled_from(_METRIC_NAMES))
    labels = draw(
        st.sampled_from([None, [], ["positive", "negative"], ["negative", "positive", "neutral"], ["positive"]])
    )
    spec["metric"] = {"name": name} | ({"labels": labels} if labels is not None else {})
    if name in ("bleu", "python:nope", "python:no_such_mod:f"):
        return ["metric.name"]
    return ["metric.labels"] if name == "label" and not labels else []


_ODD_IDS = ["gpt-4o", "fake/", "/fake", "fake/we ak", "", 42, None]


def _edit_targets(draw: Draw, spec: dict[str, Any]) -> list[str]:
    entries = draw(
        st.lists(
            st.sampled_from(HEALTHY)
            | st.sampled_from(_ODD_IDS)
            | st.builds(
                lambda m, mode: {"model": m, "mode": mode},
                st.sampled_from(HEALTHY),
                st.sampled_from(["chat", "completion", "batch"]),
            ),
            max_size=3,
        )
    )
    spec["targets"] = entries
    if not entries:
        return ["targets"]
    broken = []
    for i, entry in enumerate(entries):
        model = entry["model"] if isinstance(entry, dict) else entry
        if model not in HEALTHY or (isinstance(entry, dict) and entry["mode"] == "batch"):
            broken.append(f"targets.{i}")
    models = [e["model"] if isinstance(e, dict) else e for e in entries]
    if not broken and len(set(models)) < len(models):
        broken.append("targets")
    return broken


def _edit_range(draw: Draw, spec: dict[str, Any]) -> list[str]:
    name = draw(st.sampled_from(["temperature", "top_p"]))
    bound = st.sampled_from([-0.5, 0.0, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, math.nan, math.inf]) | st.floats(-1, 3)
    low, high = draw(bound), draw(bound)
    step = draw(st.sampled_from([None, 0.1, 0.5, 5.0, 0.0]))
    spec["search_space"][name] = {"low": low, "high": high, "step": step}
    top = 2 if name == "temperature" else 1
    in_bounds = (low >= 0 if name == "temperature" else low > 0) and low <= high <= top
    return [] if in_bounds and (step is None or step > 0) else [f"search_space.{name}"]


def _edit_search(draw: Draw, spec: dict[str, Any]) -> list[str]:
    space = spec["search_space"]
    broken = []
    k = draw(st.lists(st.integers(-1, 5), min_size=1, max_size=3))
    space["demos"] = {
        "k": k,
        "strategies": draw(st.lists(st.sampled_from(["random", "stratified", "knn"]), min_size=1, unique=True)),
    }
    if min(k) < 0:
        broken.append("search_space.demos.k")
    choices = draw(st.none() | st.lists(st.integers(-1, 64), min_size=1, max_size=3))
    if choices is not None:
        space["max_tokens"] = {"choices": choices}
        if min(choices) < 1:
            broken.append("search_space.max_tokens")
    transforms = draw(
        st.lists(
            st.sampled_from(["user_turn", "system_turn", "format_line", "xml", "markdown", "terse", "yelling"]),
            max_size=2,
        )
    )
    proposers = [None, "fake/proposer", "fake/proposer-bad", "fake/down", {"model": "fake/proposer", "mode": "chat"}]
    space["prompt"] = {
        "transforms": transforms,
        "proposer": draw(st.sampled_from(proposers)),
        "rewrites": draw(st.integers(0, 2)),
    }
    if "yelling" in transforms:
        broken.append("search_space.prompt.transforms")
    space["sampler"] = draw(st.sampled_from(["linear", "tpe", "random"]))
    space["pruner"] = draw(st.sampled_from(["improvement", "wilcoxon", "halving", "none"]))
    space["models"] = draw(
        st.sampled_from([{}, {"fake/weak": {"mode": "completion"}}, {"fake/nowhere": {"max_tokens_cap": 3}}])
    )
    return broken


def _edit_budget(draw: Draw, spec: dict[str, Any]) -> list[str]:
    spec["budget"] = {
        "trials": draw(st.integers(1, 2)),
        "finalists": draw(st.integers(1, 3)),
        **draw(st.sampled_from([{}, {"usd": 1e-9}, {"usd": 10.0}, {"calls": 1}, {"calls": 5}, {"minutes": 10.0}])),
    }
    return []


def _edit_seed_objective(draw: Draw, spec: dict[str, Any]) -> list[str]:
    spec["seed"] = draw(st.integers(0, 2**32 - 1))
    spec["objective"] = draw(st.sampled_from(["quality", ["quality", "cost"], ["quality", "latency", "cost"]]))
    return []


def _edit_prompt_source(draw: Draw, spec: dict[str, Any]) -> list[str]:
    if draw(st.booleans()):
        spec["app"]["prompt_file"] = "prompt.txt"  # beside messages: two prompts
    else:
        del spec["app"]["messages"]  # no prompt at all
    return ["app"]


# In the order they apply: an edit never replaces a section that a later one breaks.
_SPEC_EDITS = [
    _edit_params,
    _edit_split,
    _edit_metric,
    _edit_targets,
    _edit_range,
    _edit_search,
    _edit_budget,
    _edit_seed_objective,
    _edit_prompt_source,
    _edit_unknown_key,
    _edit_wrong_value,
]
_MAY_BE_VALID = [e for e in _SPEC_EDITS if e not in (_edit_prompt_source, _edit_unknown_key, _edit_wrong_value)]


@st.composite
def specs(draw: Draw) -> Project:
    """The quick project with one or two edits of its spec, valid or not."""
    project = _project()
    # a valid split can leave too few rows, or no train split for demos
    project.may_fail = [f"{DATA}: dataset.split", f"{SPEC}: search_space.demos.k"]
    # edits that may leave the spec valid come twice as often, so more runs reach a search
    pick = st.sampled_from(_SPEC_EDITS) | st.sampled_from(_MAY_BE_VALID)
    edits = draw(st.lists(pick, min_size=1, max_size=2, unique=True))
    for edit in sorted(edits, key=_SPEC_EDITS.index):
        project.broken += [f"{SPEC}: {where}" for where in edit(draw, project.spec)]
    return project


# -- datasets ----------------------------------------------------------------

_MISSING = object()
_CELL = st.one_of(
    _TEXT,
    st.sampled_from(["", " ", "{{ review }}", "{% if %}", "ünïcödé ✓ 🎉", "line\nbreak", 'quote"and,comma', "\x00"]),
    st.none(),
    st.integers(-5, 5),
    st.sampled_from([math.nan, 1e308, True]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
    st.just(_MISSING),
)
_RAW_LINES = ['{"id": "x", "review": "broken', "[1, 2]", "null", '"just a string"', "   ", "\ufeff{}"]


@st.composite
def datasets(draw: Draw) -> Project:
    """The quick spec on a JSONL or CSV dataset with edited cells, rows and lines."""
    project = _project()
    jsonl = draw(st.booleans())
    name = DATA if jsonl else "reviews.csv"
    rows: list[dict[str, Any]] = copy.deepcopy(ROWS[: draw(st.integers(0, len(ROWS)))])
    broken = not rows
    for _ in range(draw(st.integers(0, 4)) if rows else 0):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        key = draw(st.sampled_from(["id", "review", "label", "extra"]))
        value = draw(_CELL)
        if value is _MISSING:
            row.pop(key, None)
        else:
            row[key] = value
    for row in rows:
        # no expected value; in JSONL also no id or no input (a CSV cell is "" instead)
        broken = broken or row.get("label", "") in ("", None) or (jsonl and not {"id", "review"} <= set(row))
    if rows and draw(st.booleans()):
        rows.append(copy.deepcopy(rows[0]))  # a duplicate id
        broken = True
    if jsonl:
        lines = [json.dumps(r) for r in rows]
        for raw in draw(st.lists(st.sampled_from(_RAW_LINES), max_size=2)):
            lines.insert(draw(st.integers(0, len(lines))), raw)
            broken = broken or bool(raw.strip())
        text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
        content: str | bytes = text.replace("\n", "\r\n") if draw(st.booleans()) else text
    else:
        header = ["id", "review", "label"] + (["extra"] if any("extra" in r for r in rows) else [])
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        content = out.getvalue()
    if draw(st.integers(0, 9)) == 0:
        content = (content.encode() if isinstance(content, str) else content) + b"\xff\xfe"  # not UTF-8
        broken = True
    project.spec["dataset"]["path"] = name
    project.files = {name: content}
    if broken:
        project.broken.append(f"{name}: ")
    return project


# -- prompt templates ---------------------------------------------------------

# Fragments of a message that render on their own.
_FRAGMENTS = [
    "Review: {{ review }}",
    "{{ review | upper }}",
    "{{ review|length }} chars",
    "{% if review %}{{ review }}{% endif %}",
    "{{ '{{' }} literal braces",
    "{% raw %}{{ not a variable }}{% endraw %}",
    "Ünïcödé → {{ review }} 🎉",
    "",
    "{# a comment #}",
    "{{ review ~ '!' }}",
    "{{ '%s' | format(review) }}",
    "{% for w in review.split() %}{{ w }} {% endfor %}",
    "{{ review[:20] }}",
    "{{ namespace(a=1).a }}",
    "{{ review|tojson }}",
    "{{ range(3)|join(',') }}",
]
# Fragments that break a template unless another one closes them.
_UNBALANCED = ["{% if review %}", "{% endif %}", "{{ review "]
# Fragments that break any template they are in: syntax, unknown variables, sandbox
# escapes, errors while compiling or rendering.
_BREAKING = [
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% for x in review recursive %}{{ loop(x) }}{% endfor %}",
    "{{ review|truncate(-1) }}",
    "{{ review|dictsort }}",
    "{{ review|xmlattr }}",
    "{{ 2 ** 100000 }}",
    "{{ }}",
    "{{ reveiw }}",
    "{{ config }}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ review|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ '{0.__class__}'.format(review) }}",
    "{{ review.__len__() }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ review + 1 }}",
    "{{ review.nope }}",
    "{{ review|wordwrap(0) }}",
    "{{ review|format(1) }}",
    "{% include 'other.txt' %}",
    "{% import 'macros.txt' as m %}",
]


@st.composite
def templates(draw: Draw) -> Project:
    """The quick project with generated messages, inline or in a prompt file."""
    project = _project()
    messages = [
        {
            "role": draw(st.sampled_from(["system", "user", "user", "user", "assistant"])),
            "content": " ".join(draw(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=3))),
        }
        for _ in range(draw(st.integers(1, 3)))
    ]
    extras = [draw(st.sampled_from(_UNBALANCED))] if draw(st.integers(0, 3)) == 0 else []
    broken = draw(st.booleans())
    if broken:
        extras.append(draw(st.sampled_from(_BREAKING)))
    for extra in extras:
        message = messages[draw(st.integers(0, len(messages) - 1))]
        at_start = draw(st.booleans())
        message["content"] = f"{extra} {message['content']}" if at_start else f"{message['content']} {extra}"
    where = draw(st.sampled_from(["inline", "prompt.yaml", "prompt.txt"]))
    if where == "prompt.txt":  # a text prompt is one user message
        messages = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
    if where == "inline":
        project.spec["app"]["messages"] = messages
        source = f"{SPEC} (app.messages)"
    else:
        del project.spec["app"]["messages"]
        project.spec["app"]["prompt_file"] = where
        text = (
            messages[0]["content"]
            if where == "prompt.txt"
            else yaml.safe_dump({"messages": messages}, allow_unicode=True)
        )
        project.files[where] = text
        source = where
    if broken or not any(m["role"] == "user" for m in messages):
        project.broken.append(source)
    return project


# -- the properties -----------------------------------------------------------


def _root(factory: pytest.TempPathFactory) -> Path:
    return factory.mktemp("project")


@settings(SETTINGS, max_examples=40)
@given(project=specs())
def test_any_spec_ends_in_a_verdict_or_one_line_naming_the_field(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _run(project, _root(tmp_path_factory))


@settings(SETTINGS, max_examples=30)
@given(project=datasets())
def test_any_dataset_ends_in_a_verdict_or_one_line_naming_the_file(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _run(project, _root(tmp_path_factory))


@settings(SETTINGS, max_examples=30)
@given(project=templates())
def test_any_template_ends_in_a_verdict_or_one_line_naming_the_message(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _run(project, _root(tmp_path_factory))


@settings(SETTINGS, max_examples=30)
@given(params=_params())
def test_params_load_as_written_or_the_first_bad_one_is_named(
    params: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    project = _project()
    project.spec["app"]["params"] = params
    path = project.write(_root(tmp_path_factory))
    bad = [name for name, value in params.items() if not _param_valid(name, value)]
    if not bad:
        assert load_spec(path).app.params == params
        return
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: app.params.{_shown(bad[0])}: "), str(info.value)
    assert "\n" not in str(info.value)
