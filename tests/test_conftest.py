"""The suite's own rule: under CI=true a test that needs a missing component fails."""

from __future__ import annotations

from pathlib import Path

import pytest

SKIPPING = """
import pytest

def test_needs_chromium():
    pytest.skip("needs /usr/bin/chromium")

@pytest.mark.skipif(True, reason="promptfoo is not installed")
def test_needs_promptfoo():
    pass

def test_runs():
    assert True
"""

SKIPPING_MODULE = """
import pytest

pytest.importorskip("a_module_that_is_not_installed")

def test_never_collected():
    pass
"""


# a skip in the test body fails it; a skip mark (decided at set-up) makes a set-up error: both turn the run red
@pytest.mark.parametrize(("ci", "outcomes"), [("true", {"failed": 1, "errors": 1, "passed": 1}), ("", {"skipped": 2, "passed": 1})])
def test_a_skip_fails_the_run_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcomes: dict[str, int]) -> None:
    _conftest(pytester)
    pytester.makepyfile(test_components=SKIPPING)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true*needs /usr/bin/chromium*"])


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_module_that_skips_as_a_whole_fails_the_run_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    _conftest(pytester)
    pytester.makepyfile(test_module=SKIPPING_MODULE)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    if ci:
        assert result.ret != 0
        result.stdout.fnmatch_lines(["*skipped under CI=true*a_module_that_is_not_installed*"])
    else:
        result.assert_outcomes(skipped=1)


def _conftest(pytester: pytest.Pytester) -> None:
    text = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")
    pytester.makeconftest(text.replace('pytest_plugins = ["pytester"]', ""))
