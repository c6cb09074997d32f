"""Retirement dates and successors from litellm's real shipped map (read offline), and a team's own file.

The dates are those of litellm 1.110.2's map, judged on a fixed day so no test depends on
the calendar.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from migrator.errors import InputError, SpecError
from migrator.retirement import Retirement, auto_targets, load_deprecations, missing_key, retirement_of, status, today

TODAY = date(2026, 12, 1)
ANTHROPIC_NOTICE = "https://docs.anthropic.com/en/docs/about-claude/model-deprecations"


def _deprecations(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deprecations.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("model", "retires", "successor", "expected"),
    [
        ("openai/gpt-4-0613", date(2026, 10, 23), "openai/gpt-5.6-sol", "retired"),
        ("openai/gpt-4o-mini-2024-07-18", date(2027, 1, 14), "openai/gpt-6-luna", "retiring"),  # in 44 days
        # Azure's own entry: OpenAI's gpt-4o-2024-08-06 retires on 2027-01-14, for gpt-6-luna
        ("azure/gpt-4o-2024-08-06", date(2027, 4, 14), "azure/gpt-5.1", "ok"),
        ("anthropic/claude-3-5-sonnet-20240620", None, None, "unknown"),  # litellm has no date for it
    ],
)
def test_litellms_map_gives_the_date_and_the_successor_as_an_app_writes_it(
    model: str, retires: date | None, successor: str | None, expected: str
) -> None:
    found = retirement_of(model, {})

    assert (found.deprecation_date, found.successor) == (retires, successor)
    assert found.source == ("litellm" if retires else None)
    assert status(found, TODAY, 90) == expected


def test_the_teams_file_adds_a_date_litellm_lacks_and_says_so(tmp_path: Path) -> None:
    path = _deprecations(
        tmp_path,
        "- model: anthropic/claude-3-5-sonnet-20240620\n"
        "  deprecation_date: 2025-10-22\n"
        "  successor: anthropic/claude-sonnet-4-5\n"
        f"  source: {ANTHROPIC_NOTICE}\n",
    )

    found = retirement_of("anthropic/claude-3-5-sonnet-20240620", load_deprecations(path))

    assert found == Retirement(
        "anthropic/claude-3-5-sonnet-20240620", date(2025, 10, 22), "anthropic/claude-sonnet-4-5", str(path), ANTHROPIC_NOTICE
    )
    assert status(found, TODAY, 90) == "retired"
    assert found.as_row(TODAY, 90) == {
        "model": "anthropic/claude-3-5-sonnet-20240620",
        "deprecation_date": "2025-10-22",
        "days_left": -405,
        "successor": "anthropic/claude-sonnet-4-5",
        "status": "retired",
        "source": str(path),
        "notice": ANTHROPIC_NOTICE,
    }


def test_an_entry_wins_field_by_field_and_leaves_litellms_other_fields(tmp_path: Path) -> None:
    path = _deprecations(
        tmp_path,
        "- {model: openai/gpt-4o-mini-2024-07-18, successor: openai/gpt-4.1}\n"  # a successor the team prefers
        "- {model: openai/gpt-4-0613, deprecation_date: '2027-06-30'}\n",  # an extension the team was granted
    )
    overrides = load_deprecations(path)

    mini, gpt4 = retirement_of("openai/gpt-4o-mini-2024-07-18", overrides), retirement_of("openai/gpt-4-0613", overrides)

    assert (mini.deprecation_date, mini.successor, mini.source) == (date(2027, 1, 14), "openai/gpt-4.1", "litellm")
    assert (gpt4.deprecation_date, gpt4.successor, gpt4.source) == (date(2027, 6, 30), "openai/gpt-5.6-sol", str(path))
    assert status(gpt4, TODAY, 90) == "ok"


def test_a_null_date_in_the_teams_file_means_no_date_known(tmp_path: Path) -> None:
    path = _deprecations(tmp_path, "- {model: openai/gpt-4-0613, deprecation_date: null}\n")

    found = retirement_of("openai/gpt-4-0613", load_deprecations(path))

    assert (found.deprecation_date, found.source) == (None, str(path))
    assert status(found, TODAY, 90) == "unknown"


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(-1, "retired"), (0, "retired"), (1, "retiring"), (90, "retiring"), (91, "ok")],
)
def test_retired_on_the_day_retiring_within_the_window(days_left: int, expected: str) -> None:
    found = Retirement("openai/x", TODAY + timedelta(days=days_left), None, "litellm")
    assert found.days_left(TODAY) == days_left
    assert status(found, TODAY, 90) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: openai/gpt-4o\n", "expected a list of entries {model, deprecation_date, successor, source}, got dict"),
        ("- openai/gpt-4o\n", "[0]: expected a mapping with model, deprecation_date, successor, source, got str"),
        ("- {deprecation_date: 2025-01-01}\n", "[0].model: required field is missing"),
        ("- {model: gpt-4o}\n", "[0].model: must be a provider-prefixed model id"),
        ("- {model: openai/a, successor: gpt-5}\n", "[0].successor: must be a provider-prefixed model id"),
        ("- {model: openai/a, deprecation_date: 2025/01/01}\n", "[0].deprecation_date: must be a date YYYY-MM-DD, got '2025/01/01'"),
        ("- {model: openai/a, deprecation_date: 2025-01-01T10:00:00}\n", "[0].deprecation_date: must be a date YYYY-MM-DD"),
        ("- {model: openai/a, deprecation_date: 20250101}\n", "[0].deprecation_date: must be a date YYYY-MM-DD, got 20250101"),
        ("- {model: openai/a}\n- {model: openai/b, retires: 2025-01-01}\n", "[1].retires: unknown key"),
        ("- {model: openai/a}\n- {model: openai/a}\n", "[1].model: 'openai/a' is listed twice (first at [0])"),
        ("- {model: openai/a, deprecation_date: 2025-13-01}\n", "invalid YAML value: month must be in 1..12"),
        ("- {model: openai/a\n", "invalid YAML"),
    ],
)
def test_a_bad_deprecations_file_names_the_file_and_the_entry(tmp_path: Path, text: str, needle: str) -> None:
    path = _deprecations(tmp_path, text)
    with pytest.raises(SpecError) as raised:
        load_deprecations(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert needle in str(raised.value)


def test_an_empty_deprecations_file_overrides_nothing(tmp_path: Path) -> None:
    assert load_deprecations(_deprecations(tmp_path, "# nothing yet\n")) == {}


def test_today_is_fixed_by_migrator_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_TODAY", "2027-03-04")
    assert today() == date(2027, 3, 4)
    monkeypatch.setenv("MIGRATOR_TODAY", "04/03/2027")
    with pytest.raises(InputError, match=r"^MIGRATOR_TODAY: must be a date YYYY-MM-DD, got '04/03/2027'$"):
        today()
    monkeypatch.delenv("MIGRATOR_TODAY")
    assert today() == date.today()


# -- targets: auto --------------------------------------------------------------------------


def test_auto_targets_put_the_successor_first_then_the_catalogs_live_models() -> None:
    catalog = [
        "openai/gpt-4o-mini-2024-07-18",  # retiring in 44 days
        "azure/gpt-4o-2024-08-06",  # ok until 2027-04-14
        "openai/gpt-4-0613",  # the legacy model itself
        "anthropic/claude-sonnet-4-5",  # retired on 2026-11-30
        {"model": "openai/gpt-5.6-sol", "api_base": "https://gateway.example/v1"},  # the successor, behind a gateway
        "anthropic/claude-3-5-sonnet-20240620",  # no date known: kept
    ]

    picks = auto_targets("openai/gpt-4-0613", catalog, {}, TODAY)

    assert picks == [
        {"model": "openai/gpt-5.6-sol", "api_base": "https://gateway.example/v1"},
        {"model": "azure/gpt-4o-2024-08-06"},
        {"model": "anthropic/claude-3-5-sonnet-20240620"},
    ]


def test_the_window_decides_what_is_retiring() -> None:
    catalog = ["openai/gpt-4o-mini-2024-07-18"]
    assert auto_targets("anthropic/claude-3-haiku-20240307", catalog, {}, TODAY, within_days=30) == [
        {"model": "openai/gpt-4o-mini-2024-07-18"}
    ]
    with pytest.raises(SpecError):
        auto_targets("anthropic/claude-3-haiku-20240307", catalog, {}, TODAY, within_days=90)


def test_a_retired_successor_is_passed_over_for_its_own_successor(tmp_path: Path) -> None:
    # litellm: gpt-5-chat -> gpt-5.2-chat-latest (retired 2026-08-10) -> gpt-5.6-sol (no date)
    assert auto_targets("openai/gpt-5-chat", [], {}, TODAY) == [{"model": "openai/gpt-5.6-sol"}]
    # the team's successor, claude-sonnet-4-5, retired on 2026-11-30 for claude-sonnet-5-5 (litellm)
    path = _deprecations(
        tmp_path, "- {model: anthropic/claude-3-5-sonnet-20240620, successor: anthropic/claude-sonnet-4-5}\n"
    )
    overrides = load_deprecations(path)
    assert auto_targets("anthropic/claude-3-5-sonnet-20240620", [], overrides, TODAY) == [
        {"model": "anthropic/claude-sonnet-5-5"}
    ]


@pytest.mark.parametrize(
    ("legacy", "catalog", "why"),
    [
        ("anthropic/claude-3-haiku-20240307", [], "legacy anthropic/claude-3-haiku-20240307 has no known successor and the catalog is empty"),
        (
            "anthropic/claude-3-haiku-20240307",
            ["openai/gpt-4-0613", "openai/gpt-4o-mini-2024-07-18"],
            "has no known successor and the catalog's models are all retired or retiring",
        ),
        (
            "openai/gpt-5-chat",
            ["openai/gpt-5-chat"],
            "legacy openai/gpt-5-chat's successors openai/gpt-5.2-chat-latest, openai/gpt-5.6-sol are retired or retiring "
            "and the catalog lists only the legacy model",
        ),
    ],
)
def test_auto_targets_that_find_no_model_say_why(tmp_path: Path, legacy: str, catalog: list[str], why: str) -> None:
    # gpt-5.6-sol has no date in litellm's map: the team's file retires it
    path = _deprecations(tmp_path, "- {model: openai/gpt-5.6-sol, deprecation_date: 2026-12-15}\n")
    with pytest.raises(SpecError) as raised:
        auto_targets(legacy, catalog, load_deprecations(path), TODAY, file="apps/a/migration.yaml")
    message = str(raised.value)
    assert message.startswith("apps/a/migration.yaml: targets: auto found no model: legacy ")
    assert why in message


def test_a_hosted_target_lacks_its_key_only_when_its_provider_reads_one_and_none_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert missing_key({"model": "openai/gpt-5.6-sol"}) == "OPENAI_API_KEY"
    assert missing_key({"model": "openai/gpt-5.6-sol", "api_key_env": "MY_KEY"}) == "MY_KEY"
    assert missing_key({"model": "gemini/gemini-2.0-flash"}) == "GOOGLE_API_KEY or GEMINI_API_KEY"
    # self-hosted, local, and providers that sign in without an API key are never judged
    assert missing_key({"model": "openai/qwen", "api_base": "http://127.0.0.1:8080/v1"}) is None
    assert missing_key({"model": "local/qwen2.5-coder-0.5b-instruct"}) is None
    assert missing_key({"model": "bedrock/anthropic.claude-v2"}) is None
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("MY_KEY", "test-key")
    assert missing_key({"model": "gemini/gemini-2.0-flash"}) is None
    assert missing_key({"model": "openai/gpt-5.6-sol", "api_key_env": "MY_KEY"}) is None
