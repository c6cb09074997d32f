"""migrator: move an LLM app's prompt to a new model, by search instead of by hand.

Importing the package is cheap: litellm, optuna, mlflow and dspy load only when used.
"""

from __future__ import annotations

import os

# litellm downloads its price map at import unless told not to; migrator runs offline
# and uses the map litellm ships. Set the variable to "False" to opt back in.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

__all__ = ["__version__"]
