"""A fleet is a folder tree: every ``migration.yaml`` under it is an app, named by its folder.

An optional ``fleet.yaml`` at the fleet's root gives shared defaults (``catalog``,
``search_space``, ``budget``, ``tracking``, ``storage``, ``deprecations``) that each app's
own spec overrides, mapping by mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import SpecError
from migrator.spec import read_yaml

__all__ = ["FLEET_FILE", "SPEC_FILE", "App", "Fleet", "discover"]

SPEC_FILE = "migration.yaml"
FLEET_FILE = "fleet.yaml"
# what fleet.yaml may set; anything else is a typo the user should hear about
_FLEET_KEYS = ("catalog", "targets", "search_space", "budget", "tracking", "storage", "deprecations", "objective", "seed")


@dataclass(frozen=True)
class App:
    """One app of a fleet: its name (its folder relative to the root, e.g. ``team-a/invoices``) and spec."""

    name: str
    spec: Path


@dataclass(frozen=True)
class Fleet:
    """The apps under a root, in name order, and the defaults of its ``fleet.yaml`` (empty without one)."""

    root: Path
    apps: tuple[App, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    defaults_file: Path | None = None

    def deprecations_file(self) -> Path | None:
        """The fleet's ``deprecations:`` file, relative to fleet.yaml."""
        value = self.defaults.get("deprecations")
        if not value or self.defaults_file is None:
            return None
        path = Path(str(value))
        return path if path.is_absolute() else self.defaults_file.parent / path


def discover(paths: Sequence[Path]) -> Fleet:
    """The fleet under ``paths``: the first path is the root (where fleet.yaml is read); a path may be one spec file."""
    if not paths:
        raise SpecError("no fleet given: pass a folder of apps (each with a migration.yaml)")
    root = paths[0] if paths[0].is_dir() else paths[0].parent
    specs: list[Path] = []
    for path in paths:
        if path.is_file():
            specs.append(path)
        elif path.is_dir():
            specs += sorted(p for p in path.rglob(SPEC_FILE) if not any(part.startswith(".") for part in p.parts))
        else:
            raise SpecError("no such file or folder", file=str(path))
    if not specs:
        raise SpecError(f"no {SPEC_FILE} under it: an app is a folder with a {SPEC_FILE}", file=str(root))
    apps = {(_name(spec, root)): spec for spec in specs}
    defaults, defaults_file = _defaults(root)
    return Fleet(root, tuple(App(name, spec) for name, spec in sorted(apps.items())), defaults, defaults_file)


def _name(spec: Path, root: Path) -> str:
    folder = spec.resolve().parent
    try:
        relative = folder.relative_to(root.resolve())
    except ValueError:
        return folder.name
    return relative.as_posix() if relative.parts else root.resolve().name


def _defaults(root: Path) -> tuple[dict[str, Any], Path | None]:
    path = root / FLEET_FILE
    if not path.is_file():
        return {}, None
    raw = read_yaml(path)
    if raw is None:
        return {}, path
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping of shared defaults", file=str(path))
    for key in raw:
        if key not in _FLEET_KEYS:
            raise SpecError(f"unknown key; fleet.yaml may set {', '.join(_FLEET_KEYS)}", file=str(path), where=str(key))
    return dict(raw), path
