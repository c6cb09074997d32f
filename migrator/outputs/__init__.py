"""TODO face of migrator.outputs."""

from __future__ import annotations

from migrator.outputs._files import candidate_rows, summary_dict, winner_dict, write_atomic, write_outputs

__all__ = [
    "candidate_rows",
    "summary_dict",
    "winner_dict",
    "write_atomic",
    "write_outputs",
]
