"""The migration spec (migration.yaml) and search spaces, validated at the edge.

Every model here forbids unknown keys, so a typo is an error that names the file and
the field instead of a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from migrator.errors import InputError, SpecError

__all__ = [
    "AppSpec",
    "Budget",
    "DatasetSpec",
    "DemoSpace",
    "FloatRange",
    "IntChoice",
    "Message",
    "MetricSpec",
    "MigrationSpec",
    "ModelId",
    "ModelOverride",
    "PromptSpace",
    "SearchSpace",
    "SplitSpec",
    "TargetSpec",
    "TrackingSpec",
    "load_search_space",
    "load_spec",
    "merged",
    "read_text",
    "read_yaml",
    "validated",
]

Mode = Literal["chat", "completion"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


def _provider_prefixed(value: str) -> str:
    spaced = " " in value or not value.isprintable()  # a space, tab, newline or control character
    if "/" not in value or value.startswith("/") or value.endswith("/") or spaced:
        raise ValueError(
            f"must be a provider-prefixed model id such as 'openai/gpt-4o-mini', got {value!r}"
        )
    return value


# a model id as apps write it and litellm routes it: provider/name
ModelId = Annotated[str, Field(min_length=1), AfterValidator(_provider_prefixed)]


class TargetSpec(_Strict):
    """A model to call: a litellm id, optionally behind an OpenAI-compatible endpoint."""

    model: ModelId
    api_base: str | None = None
    api_key_env: str | None = None
    mode: Mode | None = None

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("must be the NAME of an environment variable, not a key")
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


# Arguments migrator sets on every call: a param of the same name would replace them,
# sending every trial to one model, or with no prompt.
_CALL_ARGUMENTS = {
    "model": "app.model and targets",
    "messages": "the prompt",
    "prompt": "the prompt",
    "api_base": "api_base",
    "base_url": "api_base",
    "api_key": "api_key_env",
    "timeout": "search_space.timeout_s",
    "num_retries": "search_space.max_retries",
}

# The params migrator reads (the search starts from them) or that change what it scores,
# with the range every provider accepts. Others go to the provider as they are.
_PARAM_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: _is_number(v) and 0 <= v <= 2, "must be a number between 0 and 2"),
    "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "must be a number greater than 0 and at most 1"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    "seed": (_is_int, "must be an integer"),
    "presence_penalty": (lambda v: _is_number(v) and -2 <= v <= 2, "must be a number between -2 and 2"),
    "frequency_penalty": (lambda v: _is_number(v) and -2 <= v <= 2, "must be a number between -2 and 2"),
    "stop": (
        lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
        "must be a string or a list of strings",
    ),
    "n": (lambda v: _is_int(v) and v == 1, "must be 1 (migrator scores one reply per request)"),
    "stream": (lambda v: v is False, "must be false or left out (migrator scores whole replies)"),
    **{
        name: (lambda v: False, f"cannot be a param: migrator sets it on each call, from {source}")
        for name, source in _CALL_ARGUMENTS.items()
    },
}
_OTHER_PARAM = (
    _is_json_scalar,
    "must be a string, a finite number, true, false or null (it is sent to the provider as it is)",
)


class AppSpec(TargetSpec):
    """The app as it runs today: legacy model, prompt and params."""

    messages: tuple[Message, ...] | None = None
    prompt_file: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems: list[InitErrorDetails] = []
        for name, param in value.items():
            valid, message = _PARAM_RULES.get(name, _OTHER_PARAM)
            if not valid(param):
                error = PydanticCustomError("param_value", message)
                problems.append(InitErrorDetails(type=error, loc=(name,), input=param))
        if problems:
            # raised inside a validator, pydantic nests these under app.params, so each
            # error names its param: app.params.temperature
            raise ValidationError.from_exception_data("params", problems)
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> AppSpec:
        if (self.messages is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of 'messages' or 'prompt_file'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self


class SplitSpec(_Strict):
    train: float = Field(default=0.2, ge=0, lt=1)
    dev: float = Field(default=0.5, gt=0, lt=1)
    test: float = Field(default=0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.dev + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + dev + test must sum to 1, got {total:g}")
        return self


class DatasetSpec(_Strict):
    path: str = Field(min_length=1)
    # labels: legacy takes the expected outputs from the legacy model's replies instead; a field
    # named beside it is kept as a reference the legacy replies are compared with
    expected_field: str | None = Field(default=None, min_length=1)
    input_fields: tuple[str, ...] | None = None
    id_field: str | None = None
    split: SplitSpec = SplitSpec()
    labels: Literal["dataset", "legacy"] = "dataset"

    @model_validator(mode="before")
    @classmethod
    def _expected_named(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("labels", "dataset") == "dataset" and "expected_field" not in data:
            error = PydanticCustomError("missing", "required field is missing (or labels: legacy: the legacy model's replies)")
            raise ValidationError.from_exception_data("dataset", [InitErrorDetails(type=error, loc=("expected_field",), input=data)])
        return data

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: Any) -> Any:
        # a spec with its own labels dumps as before the field existed: it keeps its hash (and its study)
        dumped = handler(self)
        if isinstance(dumped, dict) and self.labels == "dataset":
            dumped.pop("labels", None)
        return dumped


class MetricSpec(_Strict):
    name: str = Field(min_length=1)
    labels: tuple[str, ...] | None = None
    fields: tuple[str, ...] | None = None
    tolerance: float = Field(default=1e-6, ge=0)
    # the judge metric: which model judges, what a good reply does, and whether it sees the expected reply
    model: TargetSpec | None = None
    criteria: str | None = Field(default=None, min_length=1)
    reference: bool = True

    @field_validator("model", mode="before")
    @classmethod
    def _model_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: Any) -> Any:
        # the judge's fields dump only when set: every other metric's spec keeps its hash (and study)
        dumped = handler(self)
        if isinstance(dumped, dict):
            for key, unset in (("model", None), ("criteria", None), ("reference", True)):
                if dumped.get(key, unset) == unset:
                    dumped.pop(key, None)
        return dumped


class Budget(_Strict):
    trials: int = Field(default=40, gt=0)
    finalists: int = Field(default=3, gt=0)
    usd: float | None = Field(default=None, gt=0)
    calls: int | None = Field(default=None, gt=0)
    minutes: float | None = Field(default=None, gt=0)


class TrackingSpec(_Strict):
    uri: str | None = None
    experiment: str | None = None
    # every run registers its winner's prompt in MLflow's prompt registry: a new version of
    # this prompt (default: NAME-prompt), which the alias then points to
    prompt: str | None = Field(default=None, min_length=1)
    prompt_alias: str = Field(default="migrated", pattern=r"^[A-Za-z0-9_-]+$")


class FloatRange(_Strict):
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    step: float | None = Field(default=0.1, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low} high={self.high}")
        return self


class IntChoice(_Strict):
    choices: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)


class ModelOverride(_Strict):
    """Per-model settings in a search space (endpoint mode, extra accepted params)."""

    mode: Mode | None = None
    max_tokens_cap: int | None = Field(default=None, gt=0)


# The built-in space, for a spec without ``search_space``: a general one, as in
# search_spaces/default.yaml (every transform, demos up to 8 by every strategy, temperature).
_DEFAULT_TRANSFORMS = ("format_line", "user_turn", "system_turn", "xml", "markdown", "terse")


class DemoSpace(_Strict):
    k: tuple[int, ...] = Field(default=(0, 2, 4, 8), min_length=1)
    strategies: tuple[Literal["random", "stratified", "knn"], ...] = Field(
        default=("random", "stratified", "knn"), min_length=1
    )

    @field_validator("k")
    @classmethod
    def _non_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 0 for k in value):
            raise ValueError(f"demo counts must be >= 0, got {list(value)}")
        return value


class PromptSpace(_Strict):
    transforms: tuple[str, ...] = _DEFAULT_TRANSFORMS
    proposer: TargetSpec | None = None
    rewrites: int = Field(default=0, ge=0)
    # rewrites written during the search from the best config's failures on train (search/_reflection.py)
    reflections: int = Field(default=0, ge=0, le=8)

    @field_validator("proposer", mode="before")
    @classmethod
    def _proposer_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_serializer("proposer")
    def _proposer_compact(self, value: TargetSpec | None) -> str | dict[str, Any] | None:
        # A proposer that is only a model id dumps as the bare id, as it did before the
        # mapping form existed, so those specs keep their hash (and their Optuna study).
        if value is None:
            return None
        bare = (value.api_base, value.api_key_env, value.mode) == (None, None, None)
        return value.model if bare else value.model_dump()

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: Any) -> Any:
        # no reflections dumps as before the field existed: those specs keep their hash (and study)
        dumped = handler(self)
        if isinstance(dumped, dict) and not self.reflections:
            dumped.pop("reflections", None)
        return dumped


class SearchSpace(_Strict):
    temperature: FloatRange | None = FloatRange(low=0.0, high=1.0, step=0.1)
    top_p: FloatRange | None = None
    max_tokens: IntChoice | None = None
    demos: DemoSpace = DemoSpace()
    prompt: PromptSpace = PromptSpace()
    models: dict[str, ModelOverride] = Field(default_factory=dict)
    sampler: Literal["linear", "tpe", "random"] = "linear"
    pruner: Literal["improvement", "wilcoxon", "halving", "none"] = "improvement"
    chunk_size: int = Field(default=10, gt=0)
    concurrency: int = Field(default=8, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)

    @field_validator("temperature")
    @classmethod
    def _temperature_bounds(cls, value: FloatRange | None) -> FloatRange | None:
        if value is not None and not 0 <= value.low <= value.high <= 2:
            raise ValueError(
                f"must lie between 0 and 2 (as app.params.temperature), got low={value.low:g} high={value.high:g}"
            )
        return value

    @field_validator("top_p")
    @classmethod
    def _top_p_bounds(cls, value: FloatRange | None) -> FloatRange | None:
        if value is not None and not 0 < value.low <= value.high <= 1:
            raise ValueError(
                f"must lie above 0 and at most 1 (as app.params.top_p), got low={value.low:g} high={value.high:g}"
            )
        return value


def _model_ids_as_targets(value: Any) -> Any:
    """A list of targets may name a model by its id alone."""
    if isinstance(value, list):
        return [{"model": v} if isinstance(v, str) else v for v in value]
    return value


_CATALOG = TypeAdapter(tuple[TargetSpec, ...])


class MigrationSpec(_Strict):
    """migration.yaml after validation; paths are resolved against ``base_dir``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    app: AppSpec
    dataset: DatasetSpec
    metric: MetricSpec
    targets: tuple[TargetSpec, ...] = Field(min_length=1)
    # the approved models `targets: auto` picks from, and the team's retirement dates;
    # load_spec has resolved `auto` into targets by the time a spec exists
    catalog: tuple[TargetSpec, ...] = ()
    deprecations: str | None = None
    search_space: SearchSpace = SearchSpace()
    budget: Budget = Budget()
    objective: tuple[Literal["quality", "cost", "latency"], ...] = ("quality",)
    tracking: TrackingSpec = TrackingSpec()
    study: str | None = None
    # where the study lives (an SQLAlchemy URL); `migrator run --storage` overrides it
    storage: str | None = None
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy and Optuna take 32-bit unsigned seeds
    base_dir: Path = Path(".")
    source_file: str = "migration.yaml"

    @field_validator("targets", "catalog", mode="before")
    @classmethod
    def _target_strings(cls, value: Any) -> Any:
        return _model_ids_as_targets(value)

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("objective")
    @classmethod
    def _quality_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or value[0] != "quality" or len(set(value)) != len(value):
            raise ValueError("must start with 'quality' and name each objective once")
        return value

    @model_validator(mode="after")
    def _unique_targets(self) -> MigrationSpec:
        seen = [t.model for t in self.targets]
        dupes = sorted({m for m in seen if seen.count(m) > 1})
        if dupes:
            raise ValueError(f"targets: each model once, {dupes[0]!r} is listed twice")
        return self

    @model_validator(mode="after")
    def _reflections_searchable(self) -> MigrationSpec:
        space = self.search_space
        if space.prompt.reflections and (space.prompt.proposer is None or space.sampler != "linear" or len(self.objective) > 1):
            raise ValueError(
                "search_space.prompt.reflections: needs search_space.prompt.proposer, sampler: linear and the one "
                "objective quality (the planner offers each reflection once it is written)"
            )
        return self

    def resolve(self, relative: str) -> Path:
        """A path from the spec, relative to the spec file."""
        path = Path(relative)
        return path if path.is_absolute() else self.base_dir / path

    def deprecations_file(self) -> Path | None:
        """The team's deprecations.yaml the spec (or its fleet's defaults) names, if any."""
        return None if self.deprecations is None else _normalised(self.resolve(self.deprecations))

    def spec_hash(self) -> str:
        """Stable digest of everything that changes results: settings and file contents.

        Paths, storage and tracking are left out, so moving a project (or its study's
        database) keeps its study; editing the prompt file or the dataset starts a new one.
        The catalog and the deprecations file count only through the targets they resolved
        ``targets: auto`` to.
        """
        excluded = {"base_dir", "source_file", "tracking", "storage", "description", "catalog", "deprecations"}
        payload = self.model_dump(mode="json", exclude=excluded)
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
        files = [self.dataset.path] + ([self.app.prompt_file] if self.app.prompt_file else [])
        for relative in files:
            path = self.resolve(relative)
            if path.is_file():
                with path.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()[:16]


def _printable(part: Any) -> str:
    # a key is the user's text: a newline in it must not break the one-line error
    text = str(part)
    return text if text.isprintable() else repr(text)[1:-1]


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(_printable(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key (not one of the fields this section accepts)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
        msg = f"{msg}, got {err['input']!r}"[:300]
    msg = msg.removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def read_text(path: Path, error: type[InputError] = SpecError, kind: str = "YAML") -> str:
    """A text file's contents; a missing, unreadable or non-UTF-8 file is a one-line input error."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise error(f"is a directory, expected a {kind} file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise error(f"not valid UTF-8 (byte {exc.start})", file=str(path)) from None


def read_yaml(path: Path, error: type[InputError] = SpecError) -> Any:
    """Read YAML, turning I/O and syntax problems into one-line input errors."""
    text = read_text(path, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"invalid YAML: {problem}", file=str(path), where=where) from None
    except ValueError as exc:  # a value YAML reads as a date or a time but is none: 2024-13-01
        raise error(f"invalid YAML value: {exc}", file=str(path)) from None


def validated(model: type[BaseModel], data: Any, file: Path, prefix: str = "") -> Any:
    """``model`` validated from ``data``; the first problem becomes a SpecError naming ``file`` and the field."""
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping at the top level, got {type(data).__name__}", file=str(file))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # The first problem only: later ones are often echoes of it.
        raise SpecError(prefix + _describe(dict(exc.errors()[0])), file=str(file)) from None


def load_search_space(path: Path) -> SearchSpace:
    """Load a search space file."""
    space: SearchSpace = validated(SearchSpace, read_yaml(path) or {}, path)
    return space


def load_spec(
    path: str | Path,
    *,
    defaults: Mapping[str, Any] | None = None,
    defaults_file: Path | None = None,
    deprecations: Path | None = None,
    today: date | None = None,
    unreachable: Literal["drop", "keep"] = "drop",
) -> MigrationSpec:
    """Load and validate migration.yaml; errors name the file and the field.

    Args:
        defaults: shared settings (a fleet's ``fleet.yaml``) under the spec's own. A mapping
            set in both is merged key by key, the spec's keys winning (one level deep: the
            spec's ``search_space.demos`` replaces the fleet's); anything else the spec sets
            replaces the default.
        defaults_file: where ``defaults`` were read: their ``search_space`` and
            ``deprecations`` paths are relative to it, and an error in them names it.
        deprecations: a deprecations.yaml for ``targets: auto``, instead of the spec's
            (or the defaults') ``deprecations:``.
        today: the day ``targets: auto`` judges retirements on (default:
            :func:`migrator.retirement.today`, which ``MIGRATOR_TODAY`` sets).
        unreachable: what ``targets: auto`` does with a hosted model whose API key is not
            set: ``drop`` leaves it out with a warning (a run migrates to what it can
            reach; a worker started with the run's environment resolves the same
            targets), ``keep`` keeps it (``migrator check`` makes no call).
    """
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping at the top level", file=str(path))
    own = _with_search_space(dict(raw), path)
    for key in ("base_dir", "source_file"):
        if key in own:
            raise SpecError("unknown key (not one of the fields this section accepts)", file=str(path), where=key)
    shared = dict(defaults or {})
    if shared:
        shared_file = defaults_file or path
        shared = _with_search_space(shared, shared_file)
        if isinstance(shared.get("deprecations"), str):
            # a path in a spec is relative to the spec: the defaults' is made so
            shared["deprecations"] = _relative_to(shared_file.parent / shared["deprecations"], path.parent)
    data = merged(shared, own)
    data["base_dir"] = path.parent
    data["source_file"] = str(path)
    if data.get("targets") == "auto":
        data["targets"] = _auto_targets(data, path, own, defaults_file, deprecations, today, unreachable)
    spec = _validated_spec(data, path, own, shared, defaults_file)
    if spec.app.prompt_file is not None and not spec.resolve(spec.app.prompt_file).is_file():
        raise SpecError(f"prompt file not found: {spec.resolve(spec.app.prompt_file)}", file=str(path), where="app.prompt_file")
    if not spec.resolve(spec.dataset.path).is_file():
        raise SpecError(f"dataset file not found: {spec.resolve(spec.dataset.path)}", file=str(path), where="dataset.path")
    return spec


def _with_search_space(data: dict[str, Any], file: Path) -> dict[str, Any]:
    """``data`` with a ``search_space: FILE`` (relative to ``file``) replaced by the file's validated settings."""
    space_ref = data.get("search_space")
    if isinstance(space_ref, str):
        space_path = Path(space_ref)
        if not space_path.is_absolute():
            space_path = file.parent / space_path
        if not space_path.is_file():
            raise SpecError(f"search space file not found: {space_path}", file=str(file), where="search_space")
        data["search_space"] = load_search_space(space_path).model_dump()
    return data


def _relative_to(target: Path, folder: Path) -> str:
    return str(target) if target.is_absolute() else os.path.relpath(target, folder)


def _normalised(path: Path) -> Path:
    # a fleet's file seen from an app: apps/a/../deprecations.yaml is apps/deprecations.yaml
    return Path(os.path.normpath(path))


def merged(shared: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """``shared`` with ``own`` over it: a mapping in both is merged key by key, anything else replaced."""
    out = dict(shared)
    for key, value in own.items():
        below = shared.get(key)
        out[key] = {**below, **value} if isinstance(below, dict) and isinstance(value, dict) else value
    return out


def _origin(loc: tuple[Any, ...], own: Mapping[str, Any], shared: Mapping[str, Any], shared_file: Path | None, path: Path) -> Path:
    """The file a merged value at ``loc`` came from: the spec, or the defaults' file."""
    if shared_file is None or not loc:
        return path
    key = loc[0]
    if key not in own:
        return shared_file if key in shared else path
    below, mine = shared.get(key), own[key]
    if len(loc) > 1 and isinstance(below, dict) and isinstance(mine, dict) and loc[1] not in mine and loc[1] in below:
        return shared_file
    return path


def _validated_spec(
    data: dict[str, Any], path: Path, own: Mapping[str, Any], shared: Mapping[str, Any], shared_file: Path | None
) -> MigrationSpec:
    try:
        return MigrationSpec.model_validate(data)
    except ValidationError as exc:
        # The first problem only: later ones are often echoes of it.
        first = exc.errors()[0]
        file = _origin(tuple(first["loc"]), own, shared, shared_file, path)
        raise SpecError(_describe(dict(first)), file=str(file)) from None


def _auto_targets(
    data: Mapping[str, Any],
    path: Path,
    own: Mapping[str, Any],
    shared_file: Path | None,
    deprecations: Path | None,
    today: date | None,
    unreachable: Literal["drop", "keep"] = "drop",
) -> Any:
    """The targets ``targets: auto`` stands for: the legacy model's successor, then the catalog's live models."""
    # retirement reads its YAML through this module, so it is imported only when needed
    from migrator import retirement

    app = data.get("app")
    legacy = app.get("model") if isinstance(app, dict) else None
    if not isinstance(legacy, str):
        return "auto"  # validation names app.model, which comes before targets
    catalog_file = path if "catalog" in own or shared_file is None else shared_file
    try:
        catalog = _CATALOG.validate_python(_model_ids_as_targets(data.get("catalog") or []))
    except ValidationError as exc:
        raise SpecError("catalog." + _describe(dict(exc.errors()[0])), file=str(catalog_file)) from None
    if deprecations is None and isinstance(data.get("deprecations"), str):
        deprecations = _normalised(path.parent / data["deprecations"])
    overrides = retirement.load_deprecations(deprecations) if deprecations is not None else {}
    lacking: dict[str, str] | None = None if unreachable == "keep" else {}
    picks = retirement.auto_targets(
        legacy,
        [t.model_dump(exclude_none=True) for t in catalog],
        overrides,
        today or retirement.today(),
        file=str(path),
        unreachable=lacking,
    )
    for model, key in (lacking or {}).items():
        if (str(path), model) not in _WARNED:
            _WARNED.add((str(path), model))
            logging.getLogger("migrator").warning("%s: targets: auto leaves out %s: %s is not set", path, model, key)
    return picks


# (spec, model) pairs already warned about: a fleet loads each spec more than once
_WARNED: set[tuple[str, str]] = set()
