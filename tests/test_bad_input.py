"""Bad input, as a user meets it: `migrator run` / `eval` on malformed files.

Every case exits 2 with exactly one stderr line that names the file and the field or
line, prints no traceback, and writes nothing: the output directory never appears.
The cases run as real subprocesses, several at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.migration import prepare
from migrator.outputs import load_lockfile
from migrator.spec import load_spec
from migrator.testing import make_sentiment_rows

SECRET = "sk-test-SECRET-abc123def456ghi789jkl"
ROWS = make_sentiment_rows(30)
GOOD_DATA = "".join(json.dumps(r) + "\n" for r in ROWS)


def _base_spec() -> dict[str, Any]:
    return {
        "name": "bad-input",
        "app": {
            "model": "fake/down",
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the review."},
                {"role": "user", "content": "Review: {{ review }}"},
            ],
        },
        "dataset": {"path": "reviews.jsonl", "id_field": "id", "expected_field": "label", "input_fields": ["review"]},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": ["fake/oracle", "fake/weak"],
        "budget": {"trials": 3},
    }


def _base_winner() -> dict[str, Any]:
    return {
        "name": "bad-input",
        "model": "fake/oracle",
        "endpoint": {"mode": "chat", "api_base": None, "api_key_env": None},
        "prompt_id": "original",
        "messages": [{"role": "user", "content": "Review: {{ review }}"}],
        "params": {},
        "demos": {"k": 0, "strategy": "none", "fixed": [], "pool": []},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "dataset": {
            "path": "reviews.jsonl",
            "id_field": "id",
            "expected_field": "label",
            "input_fields": ["review"],
            "split": {"train": 0.2, "dev": 0.5, "test": 0.3},
            "seed": 0,
        },
    }


@dataclass(frozen=True)
class Case:
    """One malformed project: how to break it, and what the error line must name."""

    id: str
    command: str  # "run" or "eval"
    write: Callable[[Path], None]  # writes the broken files into an empty folder
    needles: tuple[str, ...]
    absent: tuple[str, ...] = ()


def _write_project(
    root: Path, spec: Any = None, data: str | bytes = GOOD_DATA, data_name: str = "reviews.jsonl"
) -> None:
    spec = _base_spec() if spec is None else spec
    (root / "migration.yaml").write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    target = root / data_name
    target.write_bytes(data) if isinstance(data, bytes) else target.write_text(data)


def spec_case(case_id: str, edit: Callable[[dict[str, Any]], Any], *needles: str, absent: tuple[str, ...] = ()) -> Case:
    def write(root: Path) -> None:
        spec = _base_spec()
        edit(spec)
        _write_project(root, spec)

    return Case(case_id, "run", write, ("migration.yaml", *needles), absent)


def raw_spec_case(case_id: str, text: str | bytes, *needles: str) -> Case:
    def write(root: Path) -> None:
        _write_project(root)
        target = root / "migration.yaml"
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)

    return Case(case_id, "run", write, ("migration.yaml", *needles))


def _lines(rows: list[Any], replace: dict[int, str] | None = None) -> str:
    lines = [json.dumps(r) for r in rows]
    for lineno, text in (replace or {}).items():
        lines[lineno - 1] = text
    return "\n".join(lines) + "\n"


def data_case(case_id: str, data: str | bytes, *needles: str, data_name: str = "reviews.jsonl") -> Case:
    def write(root: Path) -> None:
        spec = _base_spec()
        spec["dataset"]["path"] = data_name
        _write_project(root, spec, data, data_name)

    return Case(case_id, "run", write, (data_name, *needles))


def template_case(case_id: str, content: str, *needles: str) -> Case:
    return spec_case(case_id, lambda s: s["app"]["messages"][1].update(content=content), *needles)


def prompt_file_case(case_id: str, name: str, text: str | bytes, *needles: str) -> Case:
    def write(root: Path) -> None:
        spec = _base_spec()
        del spec["app"]["messages"]
        spec["app"]["prompt_file"] = name
        _write_project(root, spec)
        target = root / name
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)

    return Case(case_id, "run", write, (name, *needles))


def eval_case(case_id: str, edit: Callable[[dict[str, Any]], Any] | str, *needles: str, data: str = GOOD_DATA) -> Case:
    def write(root: Path) -> None:
        (root / "reviews.jsonl").write_text(data)
        if isinstance(edit, str):
            (root / "winner.yaml").write_text(edit)
            return
        winner = _base_winner()
        edit(winner)
        (root / "winner.yaml").write_text(yaml.safe_dump(winner, sort_keys=False))

    return Case(case_id, "eval", write, needles)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _template_file(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


CASES = [
    # migration.yaml: wrong types, unknown keys, missing files
    spec_case("unknown-top-level-key", _set("budgett", {"trials": 3}), "budgett"),
    spec_case(
        "target-key-variable-unset",
        _set("targets", [{"model": "openai/my-model", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "MIGRATOR_TEST_NEVER_SET"}]),
        "targets.0.api_key_env",
        "MIGRATOR_TEST_NEVER_SET",
    ),
    spec_case("unknown-nested-key", _set("search_space", {"demoss": {"k": [0]}}), "search_space.demoss"),
    spec_case(
        "unknown-target-key", _set("targets", [{"model": "fake/oracle", "apibase": "http://x"}]), "targets.0.apibase"
    ),
    spec_case("trials-not-a-number", _set("budget.trials", "ten"), "budget.trials"),
    spec_case("seed-not-a-number", _set("seed", "abc"), "seed"),
    spec_case("params-not-a-mapping", _set("app.params", [1, 2]), "app.params"),
    spec_case("input-fields-not-a-list", _set("dataset.input_fields", 5), "dataset.input_fields"),
    spec_case("metric-missing", lambda s: s.pop("metric"), "metric"),
    spec_case("dataset-file-missing", _set("dataset.path", "missing.jsonl"), "dataset.path"),
    spec_case(
        "prompt-file-missing", lambda s: s["app"].update(messages=None, prompt_file="gone.txt"), "app.prompt_file"
    ),
    spec_case("search-space-file-missing", _set("search_space", "spaces/gone.yaml"), "search_space"),
    spec_case(
        "split-does-not-sum-to-1", _set("dataset.split", {"train": 0.5, "dev": 0.5, "test": 0.5}), "dataset.split"
    ),
    spec_case("metric-unknown", _set("metric.name", "bleu"), "metric.name"),
    spec_case("objective-without-quality", _set("objective", ["cost"]), "objective"),
    spec_case("negative-retries", _set("search_space", {"max_retries": -1}), "search_space.max_retries"),
    spec_case(
        "temperature-range-reversed",
        _set("search_space", {"temperature": {"low": 1, "high": 0}}),
        "search_space.temperature",
    ),
    spec_case("negative-demo-count", _set("search_space", {"demos": {"k": [-2]}}), "search_space.demos.k"),
    spec_case(
        "key-instead-of-env-name",
        _set("targets", [{"model": "fake/oracle", "api_key_env": SECRET}]),
        "targets.0.api_key_env",
        absent=(SECRET,),
    ),
    # bad model ids
    spec_case("model-without-provider", _set("targets", ["gpt-4o"]), "targets.0.model"),
    spec_case("model-trailing-slash", _set("targets", ["openai/"]), "targets.0.model"),
    spec_case("model-with-space", _set("targets", ["fake/we ak"]), "targets.0.model"),
    spec_case("model-not-a-string", _set("app.model", 42), "app.model"),
    spec_case("model-listed-twice", _set("targets", ["fake/oracle", "fake/oracle"]), "targets"),
    spec_case(
        "model-unknown-provider",
        lambda s: s.update(targets=["notaprovider/model-x"], budget={"trials": 1}, search_space={"max_retries": 0}),
        "targets.0.model",
    ),
    # budgets and targets
    spec_case("negative-usd", _set("budget.usd", -1), "budget.usd"),
    spec_case("zero-trials", _set("budget.trials", 0), "budget.trials"),
    spec_case("negative-calls", _set("budget.calls", -5), "budget.calls"),
    spec_case("negative-minutes", _set("budget.minutes", -0.5), "budget.minutes"),
    spec_case("empty-target-list", _set("targets", []), "targets"),
    # the file itself
    raw_spec_case("yaml-syntax-error", "name: x\napp: [unclosed\n  model: fake/down\n", "line"),
    raw_spec_case("top-level-list", "- fake/oracle\n- fake/weak\n", "mapping"),
    raw_spec_case("empty-spec", "", "mapping"),
    raw_spec_case("spec-not-utf8", b"name: caf\xe9\n", "UTF-8"),
    # the dataset
    data_case("dataset-empty", "", "no rows"),
    data_case("dataset-blank-lines-only", "\n\n  \n", "no rows"),
    data_case("dataset-bad-json-line", _lines(ROWS, {7: '{"id": "x", "review": "broken'}), "line 7", "invalid JSON"),
    data_case("dataset-row-not-an-object", _lines(ROWS, {3: '["r0002", "great", "positive"]'}), "line 3"),
    data_case("dataset-expected-missing", _lines(ROWS, {4: '{"id": "r9", "review": "great"}'}), "line 4", "label"),
    data_case(
        "dataset-expected-empty", _lines(ROWS, {5: '{"id": "r9", "review": "great", "label": ""}'}), "line 5", "label"
    ),
    data_case(
        "dataset-input-missing",
        _lines(ROWS, {2: '{"id": "r9", "text": "great", "label": "positive"}'}),
        "line 2",
        "review",
    ),
    data_case(
        "dataset-duplicate-id", _lines(ROWS, {6: json.dumps({**ROWS[1], "review": "again"})}), "line 6", "duplicate id"
    ),
    data_case("dataset-non-utf8", _lines(ROWS).encode().replace(b"visit 2)", b"visit \xff\xfe)", 1), "line 3", "UTF-8"),
    data_case("dataset-too-few-rows", _lines(ROWS[:1]), "dataset.split"),
    data_case("dataset-unsupported-type", "id\treview\tlabel\n", "reviews.txt", data_name="reviews.txt"),
    data_case(
        "csv-extra-cells",
        "id,review,label\nr1,great,positive\nr2,awful,negative,extra\n",
        "line 3",
        data_name="reviews.csv",
    ),
    data_case(
        "csv-field-over-limit",
        "id,review,label\nr1," + "x" * 200_000 + ",positive\n",
        "line 2",
        data_name="reviews.csv",
    ),
    data_case("parquet-corrupt", b"PAR1 not really", "Parquet", data_name="reviews.parquet"),
    # templates
    template_case("template-unknown-variable", "Review: {{ reveiw }}", "reveiw"),
    template_case("template-syntax-error", "Review: {{ review ", "messages[1].content", "syntax error"),
    template_case(
        "template-unclosed-block", "{% if review %}Review: {{ review }}", "messages[1].content", "syntax error"
    ),
    template_case(
        "sandbox-subclasses",
        "{{ ''.__class__.__mro__[1].__subclasses__() }} {{ review }}",
        "messages[1].content",
        "sandbox",
    ),
    template_case(
        "sandbox-cycler-globals", "{{ cycler.__init__.__globals__.os }} {{ review }}", "messages[1].content", "sandbox"
    ),
    template_case(
        "sandbox-for-subclasses",
        "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}{{ review }}",
        "messages[1].content",
        "sandbox",
    ),
    template_case("sandbox-attr-filter", "{{ review | attr('__class__') }}", "messages[1].content", "sandbox"),
    template_case(
        "sandbox-huge-range", "{% for i in range(10**9) %}{% endfor %}{{ review }}", "messages[1].content", "sandbox"
    ),
    template_case("template-runtime-error", "{{ 1 / 0 }} {{ review }}", "messages[1].content", "ZeroDivisionError"),
    spec_case(
        "template-without-user-message",
        _set("app.messages", [{"role": "system", "content": "{{ review }}"}]),
        "user message",
    ),
    prompt_file_case(
        "prompt-file-syntax-error",
        "prompt.txt",
        _template_file(["Classify.", "", "Review: {{ review }", "Answer:"]),
        "line 3",
    ),
    prompt_file_case("prompt-file-not-utf8", "prompt.txt", b"Review: {{ review }} caf\xe9", "UTF-8"),
    prompt_file_case(
        "prompt-yaml-bad-role", "prompt.yaml", "messages:\n  - {role: robot, content: '{{ review }}'}\n", "messages[0]"
    ),
    prompt_file_case("prompt-yaml-not-a-mapping", "prompt.yaml", "- just a list\n", "messages"),
    # `migrator eval` on a malformed winner.yaml
    eval_case("winner-yaml-syntax-error", "model: fake/oracle\nmessages: [unclosed\n", "winner.yaml", "line"),
    eval_case("winner-not-a-mapping", "- fake/oracle\n", "winner.yaml"),
    eval_case("winner-without-messages", lambda w: w.pop("messages"), "winner.yaml", "messages"),
    eval_case(
        "winner-template-syntax-error",
        _set("messages", [{"role": "user", "content": "{{ review "}]),
        "winner.yaml",
        "messages[0].content",
    ),
    eval_case("winner-metric-malformed", _set("metric", {"name": 5}), "winner.yaml", "metric.name"),
    eval_case("winner-model-without-provider", _set("model", "gpt4"), "winner.yaml", "model"),
    eval_case(
        "winner-split-malformed",
        _set("dataset.split", {"train": 0.9, "dev": 0.9, "test": 0.9}),
        "winner.yaml",
        "dataset.split",
    ),
    eval_case("winner-dataset-missing", _set("dataset.path", "gone.jsonl"), "gone.jsonl", "not found"),
    eval_case("winner-file-missing", lambda w: None, "nowhere.yaml", "file not found"),
]


# The corpus runs in children forked (all at once) from one Python process that has
# imported what `migrator run` imports before it reads a file, so each case costs a fork
# instead of an interpreter start. The child runs the CLI's `main` as `python -m migrator` does,
# with its own stdout and stderr; a sample also runs that way, and must agree.
_FORK_RUNNER = r"""
import json, os, sys, traceback
import migrator.cli, migrator.migration
children = {}
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        try:
            code = migrator.cli.main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    children[pid] = job["id"]
codes = {children[pid]: os.waitstatus_to_exitcode(status) for pid, status in (os.waitpid(pid, 0) for pid in children)}
print(json.dumps(codes))
"""
REAL_SAMPLE = (
    "unknown-nested-key",
    "dataset-bad-json-line",
    "sandbox-subclasses",
    "prompt-file-syntax-error",
    "winner-without-messages",
)
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": SECRET}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    root: Path
    out: Path
    before: frozenset[Path]
    real: subprocess.CompletedProcess[str] | None = None


def _argv(case: Case, root: Path) -> list[str]:
    if case.command == "run":
        return ["run", str(root / "migration.yaml"), "--out", str(root / "out"), "--no-tracking"]
    return ["eval", str(root / ("nowhere.yaml" if case.id == "winner-file-missing" else "winner.yaml"))]


def _real_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *argv], capture_output=True, text=True, env=ENV, timeout=120
    )


def _forked_runs(jobs: list[dict[str, Any]]) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER],
        input="".join(json.dumps(j) + "\n" for j in jobs),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    codes: dict[str, int] = json.loads(proc.stdout)
    return codes


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once; the sample also as `python -m migrator`, alongside."""
    base = tmp_path_factory.mktemp("bad-input")
    logs = tmp_path_factory.mktemp("bad-input-logs")
    jobs, before = [], {}
    for case in CASES:
        root = base / case.id
        root.mkdir()
        case.write(root)
        before[case.id] = frozenset(root.rglob("*"))
        jobs.append(
            {
                "id": case.id,
                "argv": _argv(case, root),
                "stdout": str(logs / f"{case.id}.out"),
                "stderr": str(logs / f"{case.id}.err"),
            }
        )
    by_id = {case.id: case for case in CASES}
    with ThreadPoolExecutor(max_workers=len(REAL_SAMPLE)) as pool:
        real = {case_id: pool.submit(_real_run, _argv(by_id[case_id], base / case_id)) for case_id in REAL_SAMPLE}
        codes = _forked_runs(jobs)
    return {
        case.id: Outcome(
            codes[case.id],
            (logs / f"{case.id}.out").read_text(),
            (logs / f"{case.id}.err").read_text(),
            base / case.id,
            base / case.id / "out",
            before[case.id],
            real[case.id].result() if case.id in real else None,
        )
        for case in CASES
    }


def test_the_corpus_is_large_and_its_base_files_are_valid(tmp_path: Path) -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    _write_project(tmp_path)
    assert prepare(load_spec(tmp_path / "migration.yaml")).splits.test
    (tmp_path / "winner.yaml").write_text(yaml.safe_dump(_base_winner()))
    assert load_lockfile(tmp_path / "winner.yaml").splits.test


KNOWN_GAPS: dict[str, str] = {}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[c.id])] if c.id in KNOWN_GAPS else []
        )
        for c in CASES
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_problem_and_writes_nothing(
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[case.id]
    assert outcome.code == 2, outcome.stderr
    assert "Traceback" not in outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("migrator: error: ")
    file, *fields = case.needles
    assert f"/{file}" in line, f"{file!r} not named in {line!r}"
    message = line.replace(str(outcome.root), "")  # the case's folder name says what is wrong, too
    for needle in fields:
        assert needle in message, f"{needle!r} not in {line!r}"
    for secret in (SECRET, *case.absent):
        assert secret not in outcome.stderr + outcome.stdout
    assert not outcome.out.exists()
    assert frozenset(outcome.root.rglob("*")) == outcome.before  # nothing written anywhere
    if outcome.real is not None:  # the same as a real `python -m migrator`
        assert (outcome.real.returncode, outcome.real.stderr, outcome.real.stdout) == (
            outcome.code,
            outcome.stderr,
            outcome.stdout,
        )


# Runs a command in a child forked from a fresh, small interpreter and reports the child's
# peak memory: a child forked straight from pytest would inherit pytest's own peak.
_PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_one_gigabyte_dataset_fails_at_its_first_bad_lines_without_being_read(tmp_path: Path) -> None:
    _write_project(tmp_path)
    data = tmp_path / "reviews.jsonl"
    with data.open("wb") as fh:
        fh.write(b'{"id": "r0", "review": "great", "label": \n')
        fh.truncate(2**30)  # a sparse gigabyte of NUL bytes, and no newline in it
    assert data.stat().st_size == 2**30
    peak = tmp_path / "peak-rss-kib"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _PEAK_RSS,
            str(peak),
            "-m",
            "migrator",
            "run",
            str(tmp_path / "migration.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    assert int(peak.read_text()) < 250 * 1024  # KiB: a fraction of the file's size
    lines = proc.stderr.splitlines()
    assert (
        len(lines) == 1
        and "reviews.jsonl" in lines[0]
        and "line 1: invalid JSON" in lines[0]
        and "line 2: longer than" in lines[0]
    )
    assert not (tmp_path / "out").exists()


def test_the_bad_input_path_does_not_import_the_heavy_libraries(tmp_path: Path) -> None:
    _write_project(tmp_path, data="")
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "migrator",
            "run",
            str(tmp_path / "migration.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert proc.returncode == 2
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "migrator" in imported
    assert not imported & {"litellm", "openai", "optuna", "mlflow", "dspy", "sklearn", "scipy", "sqlalchemy", "plotly"}
