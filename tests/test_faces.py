"""Each package's face: ``__all__`` is exactly what it exports, and every name in it is there.

A name a package binds without listing it is an accidental export (callers come to depend on
it); a listed name that is missing breaks ``from migrator.x import *``. Private modules
(``_name``) are the implementation behind the face and are not checked here.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import migrator


def _faces() -> list[str]:
    """``migrator`` and every public package or module below it."""
    names = ["migrator"]
    for info in pkgutil.walk_packages(migrator.__path__, prefix="migrator."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def _bound_public_names(module: types.ModuleType) -> set[str]:
    """The public names a face offers: for a package, what it binds from migrator (re-exports
    are its job); for a plain module, what it defines itself (an imported helper is a use,
    not an export). Submodules and the standard library's and third parties' names
    (``Any``, ``dataclass``, ``yaml``) are left out."""
    is_package = hasattr(module, "__path__")
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or name == "annotations" or isinstance(value, types.ModuleType):
            continue
        home = getattr(value, "__module__", None)
        if home is not None and not str(home).startswith("migrator"):
            continue
        if not is_package and home is not None and home != module.__name__:
            continue
        names.add(name)
    return names


def test_every_package_and_public_module_is_found() -> None:
    faces = set(_faces())
    for package in ("llm", "candidates", "search", "migration", "outputs", "outputs.tracking", "outputs.report", "local", "cli", "testing", "importers"):
        assert f"migrator.{package}" in faces


@pytest.mark.parametrize("name", _faces())
def test_all_is_exactly_what_the_face_exports(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not have: {missing}"
    unlisted = sorted(_bound_public_names(module) - set(exported))
    assert not unlisted, f"{name} exports names its __all__ does not list: {unlisted}"
