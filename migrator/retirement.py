"""When a model retires and what replaces it: litellm's model map, corrected by the team's own file.

litellm's shipped map gives a ``deprecation_date`` and a ``successor_model`` for many
OpenAI and Azure models and few others (Anthropic's claude-3-5-sonnet-20240620 has no
date). A team's ``deprecations.yaml`` adds or corrects entries::

    - model: anthropic/claude-3-5-sonnet-20240620   # the id as apps write it
      deprecation_date: 2025-10-22                  # YYYY-MM-DD, or null: no date known
      successor: anthropic/claude-sonnet-4-5
      source: https://docs.anthropic.com/en/docs/about-claude/model-deprecations

Each field an entry gives wins over litellm's; the fields it leaves out still come from
litellm. Every answer says where its date came from: ``"litellm"``, the deprecations
file's path, or ``None`` when nobody knows one.

"Today" is :func:`today`: the date, unless ``MIGRATOR_TODAY=YYYY-MM-DD`` fixes it (for CI
runs that must not depend on the day); every function here takes it as an argument.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from migrator.errors import InputError, SpecError
from migrator.models import import_litellm, is_local, model_info
from migrator.spec import ModelId, read_yaml, validated

__all__ = [
    "TODAY_ENV",
    "WITHIN_DAYS",
    "Deprecation",
    "Retirement",
    "Status",
    "auto_targets",
    "load_deprecations",
    "missing_key",
    "retirement_of",
    "status",
    "today",
]

TODAY_ENV = "MIGRATOR_TODAY"
# a model this close to its retirement date is retiring: too late to start on it
WITHIN_DAYS = 90
Status = Literal["retired", "retiring", "ok", "unknown"]
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def today() -> date:
    """The day retirements are judged on: ``$MIGRATOR_TODAY`` (YYYY-MM-DD) if set, else the date."""
    value = os.environ.get(TODAY_ENV)
    if not value:
        return date.today()
    try:
        return _iso_day(value)
    except ValueError as exc:
        raise InputError(str(exc), where=TODAY_ENV) from None


def _iso_day(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):  # YAML reads an unquoted day as a date
        return value
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return date.fromisoformat(value)
    raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelId
    deprecation_date: Annotated[date | None, BeforeValidator(lambda v: None if v is None else _iso_day(v))] = None
    successor: ModelId | None = None
    source: str | None = None


@dataclass(frozen=True)
class Deprecation:
    """One entry of a deprecations file; ``sets`` names the fields it gives (``deprecation_date``, ``successor``)."""

    model: str
    file: str
    sets: frozenset[str]
    deprecation_date: date | None = None
    successor: str | None = None
    notice: str | None = None  # the entry's ``source``: where the team read it


@dataclass(frozen=True)
class Retirement:
    """A model's retirement date and successor as far as known; ``source`` is where the date came from."""

    model: str
    deprecation_date: date | None
    successor: str | None
    source: str | None
    notice: str | None = None

    def days_left(self, today: date) -> int | None:
        """Days from ``today`` to the retirement date (0 or less: retired); None without a date."""
        return None if self.deprecation_date is None else (self.deprecation_date - today).days

    def as_row(self, today: date, within_days: int) -> dict[str, Any]:
        """The fields a report shows (JSON-ready): model, deprecation_date, days_left, successor, status, source, notice."""
        return {
            "model": self.model,
            "deprecation_date": None if self.deprecation_date is None else self.deprecation_date.isoformat(),
            "days_left": self.days_left(today),
            "successor": self.successor,
            "status": status(self, today, within_days),
            "source": self.source,
            "notice": self.notice,
        }


def load_deprecations(path: Path) -> dict[str, Deprecation]:
    """A team's deprecations file, by model id; a bad entry is a SpecError naming the file and ``[i].field``."""
    raw = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise SpecError(
            f"expected a list of entries {{model, deprecation_date, successor, source}}, got {type(raw).__name__}",
            file=str(path),
        )
    entries: dict[str, Deprecation] = {}
    first_at: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SpecError(
                f"expected a mapping with model, deprecation_date, successor, source, got {type(item).__name__}",
                file=str(path),
                where=f"[{i}]",
            )
        entry: _Entry = validated(_Entry, item, path, prefix=f"[{i}].")
        if entry.model in first_at:
            raise SpecError(f"{entry.model!r} is listed twice (first at [{first_at[entry.model]}])", file=str(path), where=f"[{i}].model")
        first_at[entry.model] = i
        entries[entry.model] = Deprecation(
            model=entry.model,
            file=str(path),
            sets=frozenset(entry.model_fields_set & {"deprecation_date", "successor"}),
            deprecation_date=entry.deprecation_date,
            successor=entry.successor,
            notice=entry.source,
        )
    return entries


def _as_app_id(successor: str | None, legacy: str) -> str | None:
    # litellm names OpenAI's and Anthropic's successors without the provider (gpt-6-luna),
    # Azure's and Gemini's with it (azure/gpt-5.1): the legacy model's provider goes in front
    provider = legacy.partition("/")[0]
    if successor is None or successor.startswith(f"{provider}/"):
        return successor
    return f"{provider}/{successor}"


def retirement_of(model: str, overrides: Mapping[str, Deprecation]) -> Retirement:
    """``model``'s retirement: each field its entry in ``overrides`` gives, else litellm's."""
    info = model_info(model)
    deprecation_date, successor = info.deprecation_date, _as_app_id(info.successor, model)
    source = "litellm" if deprecation_date is not None else None
    entry = overrides.get(model)
    if entry is None:
        return Retirement(model, deprecation_date, successor, source)
    if "deprecation_date" in entry.sets:
        deprecation_date, source = entry.deprecation_date, entry.file
    if "successor" in entry.sets:
        successor = entry.successor
    return Retirement(model, deprecation_date, successor, source, entry.notice)


def status(retirement: Retirement, today: date, within_days: int) -> Status:
    """``retired`` on or after the date, ``retiring`` within ``within_days`` of it, ``ok`` later, ``unknown`` without one."""
    days = retirement.days_left(today)
    if days is None:
        return "unknown"
    if days <= 0:
        return "retired"
    return "retiring" if days <= within_days else "ok"


def _live(model: str, overrides: Mapping[str, Deprecation], today: date, within_days: int) -> bool:
    return status(retirement_of(model, overrides), today, within_days) not in ("retired", "retiring")


def _successors(model: str, overrides: Mapping[str, Deprecation]) -> Iterator[str]:
    """The successor, its successor, and so on (a successor may be retiring itself)."""
    seen = {model}
    nxt = retirement_of(model, overrides).successor
    while nxt is not None and nxt not in seen:
        yield nxt
        seen.add(nxt)
        nxt = retirement_of(nxt, overrides).successor


def missing_key(target: Mapping[str, Any]) -> str | None:
    """The API key a hosted target needs from the environment and lacks (``"OPENAI_API_KEY"``), else None.

    Only providers reached by an API key are judged: a self-hosted endpoint (``api_base``),
    a local or fake model, and a provider reached by other credentials (AWS, Azure AD, a
    service account) never lack one here. litellm says which variables a provider reads.
    """
    model = str(target["model"])
    if target.get("api_base") or is_local(model) or model.startswith("fake/"):
        return None
    if target.get("api_key_env"):
        name = str(target["api_key_env"])
        return None if os.environ.get(name) else name
    missing = list(import_litellm().validate_environment(model).get("missing_keys") or [])
    keys = [k for k in missing if k.endswith("_API_KEY")]
    if not keys or len(keys) < len(missing) or any(os.environ.get(k) for k in keys):
        return None
    return " or ".join(keys)


def auto_targets(
    legacy_model: str,
    catalog: Sequence[str | Mapping[str, Any]],
    overrides: Mapping[str, Deprecation],
    today: date,
    within_days: int = WITHIN_DAYS,
    *,
    file: str | None = None,
    unreachable: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """What ``targets: auto`` stands for, as target mappings: the successor first, then the catalog's live models.

    The successor is the first in its line (successor, its successor, ...) that is not
    retired or retiring; catalog models that are, and the legacy model itself, are left
    out. A catalog entry's mapping (its ``api_base``, ``mode``) is kept, for the
    successor too when the catalog lists it.

    Args:
        unreachable: when given, picks whose API key is not set (:func:`missing_key`) are
            left out too, and recorded here as model -> the missing variable.

    Raises:
        SpecError: no model is left (naming ``file`` and ``targets``).
    """
    entries = [{"model": e} if isinstance(e, str) else dict(e) for e in catalog]
    by_model = {e["model"]: e for e in entries}
    line = list(_successors(legacy_model, overrides))
    picks: list[dict[str, Any]] = []
    successor = next((m for m in line if _live(m, overrides, today, within_days)), None)
    if successor is not None:
        picks.append(by_model.get(successor, {"model": successor}))
    others = [e for e in entries if e["model"] != legacy_model]
    for entry in others:
        if all(p["model"] != entry["model"] for p in picks) and _live(entry["model"], overrides, today, within_days):
            picks.append(entry)
    if unreachable is not None:
        lacking = {p["model"]: key for p in picks if (key := missing_key(p)) is not None}
        unreachable.update(lacking)
        if lacking and len(lacking) == len(picks):
            keys = ", ".join(f"{m} needs {k}" for m, k in lacking.items())
            raise SpecError(f"auto found no model it can reach: {keys}, which is not set", file=file, where="targets")
        picks = [p for p in picks if p["model"] not in lacking]
    if not picks:
        raise SpecError(f"auto found no model: {_why_none(legacy_model, line, entries, others)}", file=file, where="targets")
    return picks


def _why_none(legacy: str, line: list[str], entries: list[dict[str, Any]], others: list[dict[str, Any]]) -> str:
    if not line:
        first = f"legacy {legacy} has no known successor"
    elif len(line) == 1:
        first = f"legacy {legacy}'s successor {line[0]} is retired or retiring"
    else:
        first = f"legacy {legacy}'s successors {', '.join(line)} are retired or retiring"
    if not entries:
        second = "the catalog is empty"
    elif not others:
        second = "the catalog lists only the legacy model"
    else:
        second = "the catalog's models are all retired or retiring"
    return f"{first} and {second}"
