"""Secrets never reach what migrator writes or prints."""

from __future__ import annotations

import pytest

from migrator.redaction import redact, secret_values

ENV = {
    "OPENAI_API_KEY": "abcd1234efgh5678",
    "HF_TOKEN": "tok_9f8e7d6c5b4a",
    "DB_SECRET": "hunter2hunter2",
    "SMTP_PASSWORD": "correcthorse",
    "GCP_CREDENTIALS": "credentialvalue99",
    "HOME": "/home/someone",
    "MODEL_NAME": "gpt-4o-mini-2024",
    "SHORT_KEY": "abc",
}


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "DB_SECRET", "SMTP_PASSWORD", "GCP_CREDENTIALS"])
def test_secret_env_values_are_replaced(name: str) -> None:
    text = f"request failed for key {ENV[name]} (retrying)"
    assert redact(text, ENV) == "request failed for key *** (retrying)"


def test_every_occurrence_is_replaced() -> None:
    text = f"{ENV['DB_SECRET']} and again {ENV['DB_SECRET']}"
    assert redact(text, ENV) == "*** and again ***"


def test_non_secret_env_values_are_left_alone() -> None:
    text = "home is /home/someone, model gpt-4o-mini-2024"
    assert redact(text, ENV) == text


def test_short_values_are_not_treated_as_secrets() -> None:
    # a 3-character "key" would blank out ordinary words everywhere
    assert redact("abc is the alphabet", ENV) == "abc is the alphabet"
    assert "abc" not in secret_values(ENV)


def test_secret_names_match_case_insensitively_and_only_at_the_end() -> None:
    env = {"my_api_key": "lowercase-name-value", "KEYRING_BACKEND": "keyring.backends.fail"}
    assert secret_values(env) == ["lowercase-name-value"]


def test_longer_secrets_are_replaced_first() -> None:
    env = {"A_KEY": "abcdefgh", "B_KEY": "abcdefgh-and-more"}
    assert redact("token abcdefgh-and-more end", env) == "token *** end"


@pytest.mark.parametrize(
    "token",
    [
        "sk-proj-AbCdEf0123456789xyz",
        "sk-ant-api03-abcdefghijklmnop",
        "gsk_abcdefghijklmnop1234",
        "hf_AbCdEfGhIjKlMnOpQrSt",
        "xai-abcdefghijklmnopqrst",
    ],
)
def test_key_shaped_tokens_are_replaced_even_when_not_in_the_environment(token: str) -> None:
    text = f"Incorrect API key provided: {token}. See the docs."
    assert redact(text, {}) == "Incorrect API key provided: ***. See the docs."


@pytest.mark.parametrize(
    "text",
    [
        "The review says the task-management app is great.",
        "Set OPENAI_API_KEY in your environment; see https://example.com/docs/keys.",
        "sk-short is fine, and so is risk-free-investing.",
        "Answer with exactly one of: positive, negative. Nothing else.",
        "",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text, ENV) == text


def test_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_TOKEN", "very-secret-value-42")
    assert redact("got very-secret-value-42 back") == "got *** back"
