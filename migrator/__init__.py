"""migrator: move an LLM app's prompt to a new model, by search instead of by hand.

Importing the package is cheap and changes nothing: litellm, optuna, mlflow and dspy load
only when used. The parts and what may import what: README.md, "Architecture".
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
