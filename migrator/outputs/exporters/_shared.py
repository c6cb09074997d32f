"""What the exporters share: the placeholder filler of their code templates, and where
an exported local model is looked for."""

from __future__ import annotations

import re
from collections.abc import Mapping

# where an exported local model is looked for: `python -m llama_cpp.server ... --port 8077`
LOCAL_API_BASE = "http://127.0.0.1:8077/v1"


def fill_in(template: str, values: Mapping[str, str]) -> str:
    """``@NAME@`` placeholders replaced in one pass (a value is never read as a placeholder)."""
    return re.sub(r"@([A-Z]+)@", lambda m: values[m.group(1)], template)
