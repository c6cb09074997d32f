"""The winner as a promptfoo config: the same requests, scored by the same metric.

``promptfoo_config`` writes the winner's provider and prompt (one shared template when
that is exactly what migrator sends, else each test's own prompt) and the test split as
test cases. Each metric becomes one assertion: JavaScript that mirrors
``migrator/parsing.py`` and ``migrator/metrics.py``, or a Python call for a
``python:module:function`` metric. The ``assertions`` metric (a promptfoo suite imported by
``migrator init``) gives each test its own assertions back.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from migrator.models import is_local
from migrator.outputs.exporters._shared import LOCAL_API_BASE, fill_in

if TYPE_CHECKING:
    from migrator.outputs import WinnerLock
    from migrator.outputs._lockfile import LockedEndpoint
    from migrator.spec import MetricSpec

# Sampling params promptfoo's OpenAI-style providers know by name; any other param of
# the winner is passed through to the request body as it is.
_PROMPTFOO_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")


def _promptfoo_provider(lock: WinnerLock) -> dict[str, Any]:
    """The promptfoo provider that makes the winner's request: its id and config."""
    endpoint = lock.endpoint
    provider, _, name = lock.model.partition("/")
    self_hosted = is_local(lock.model) or bool(endpoint.api_base)  # an OpenAI-compatible server
    config = _provider_config(lock.params, endpoint, self_hosted=self_hosted, openai=provider == "openai")
    return {"id": _provider_id(provider, name, endpoint, self_hosted=self_hosted), "config": config}


def _provider_config(
    params: Mapping[str, Any], endpoint: LockedEndpoint, *, self_hosted: bool, openai: bool
) -> dict[str, Any]:
    """The provider's config: the winner's params, its key's variable, and promptfoo's defaults undone."""
    config: dict[str, Any] = {k: v for k, v in params.items() if k in _PROMPTFOO_PARAMS}
    if extra := {k: v for k, v in params.items() if k not in _PROMPTFOO_PARAMS}:
        config["passthrough"] = extra
    if endpoint.api_key_env:
        config["apiKeyEnvar"] = endpoint.api_key_env  # the variable's name, never the key
    if (self_hosted or openai) and endpoint.mode != "completion":
        config["omitDefaults"] = True  # no temperature or max_tokens the winner does not set
    if endpoint.mode == "completion" and "stop" not in params:
        config["stop"] = []  # promptfoo's completion provider would stop at ChatML tokens
    if self_hosted:
        config["apiBaseUrl"] = endpoint.api_base or LOCAL_API_BASE
        if not endpoint.api_key_env:
            config["apiKeyRequired"] = False  # a self-hosted server without a key
    return config


def _provider_id(provider: str, name: str, endpoint: LockedEndpoint, *, self_hosted: bool) -> str:
    if self_hosted:
        kind = "completion" if endpoint.mode == "completion" else "chat"
        return f"openai:{kind}:{name}"
    if provider == "anthropic":
        return f"anthropic:messages:{name}"
    if provider in ("gemini", "vertex_ai"):
        return f"google:{name}"
    return f"{provider}:chat:{name}" if provider == "openai" else f"{provider}:{name}"


# promptfoo runs a JavaScript assertion's text as a function body when it has more than
# one line (a one-line text is wrapped in `return ...`). This prelude mirrors
# migrator/parsing.py, so promptfoo passes exactly the test examples migrator scored 1:
# Python's whitespace (str.split), casefold (toLowerCase, then the folds it lacks) and
# Unicode digits. It must contain no Nunjucks tag openers: promptfoo renders assertion
# text as a template. `_expected` is {text: str(expected), value: expected, number:
# float(expected) or null, json}, so the JS never has to redo Python's conversions.
_JS_PRELUDE = r"""const WS = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const strip = (s) => s.replace(new RegExp("^" + WS + "+|" + WS + "+$", "g"), "");
const ndigit = (d) => { const cp = d.codePointAt(0); let s = cp; while (/\p{Nd}/u.test(String.fromCodePoint(s - 1))) s--; return String((cp - s) % 10); };
const ascii = (s) => String(s).replace(/\p{Nd}/gu, ndigit);
const text = String(output);
const fence = text.match(new RegExp("```[a-zA-Z0-9_-]*" + WS + "*\\n?([\\s\\S]*?)```"));
const body = fence ? strip(fence[1]) : strip(text);
const EDGE = " \t\n.,;:!?\"'`*()[]";
const fold = (s) => s.toLowerCase().replace(/ß|ẞ/g, "ss").replace(/ς/g, "σ").replace(/ϐ/g, "β").replace(/ϑ/g, "θ").replace(/ϕ/g, "φ").replace(/ϖ/g, "π").replace(/ϰ/g, "κ").replace(/ϱ/g, "ρ").replace(/ϵ/g, "ε").replace(/ẛ/g, "ṡ").replace(/ﬅ|ﬆ/g, "st");
const norm = (s) => {
  const t = fold(String(s).normalize("NFKC")).split(new RegExp(WS + "+")).filter(Boolean).join(" ");
  let a = 0, b = t.length;
  while (a < b && EDGE.includes(t[a])) a++;
  while (b > a && EDGE.includes(t[b - 1])) b--;
  return t.slice(a, b);
};
const close = (a, b, tol) => Math.abs(a - b) <= Math.max(tol * Math.max(Math.abs(a), Math.abs(b)), tol);
const want = context.vars._expected;"""

_JS_LABEL = r"""const labels = @LABELS@;
const lines = body.split(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/).filter((l) => strip(l));
if (!lines.length) return false;
const first = norm(lines[0]);
let got = labels.find((l) => norm(l) === first);
if (got === undefined) {
  let best = Infinity;
  for (const l of labels) {
    const esc = norm(l).replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/[{}]/g, "\\$&");
    const at = first.search(new RegExp("(?<![\\p{L}\\p{N}_-])" + esc + "(?![\\p{L}\\p{N}_-])", "u"));
    if (at >= 0 && at < best) { best = at; got = l; }
  }
}
return got !== undefined && norm(got) === norm(want.text);"""

_JS_NUMERIC = r"""const m = ascii(body).replace(/\u2212/g, "-").match(/-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+/);
return m !== null && want.number !== null && close(Number(m[0].replace(/,/g, "")), want.number, @TOLERANCE@);"""

_JS_EXACT = "return norm(body) === norm(want.text);"

_JS_F1 = r"""const toks = (s) => norm(s).match(/[\p{L}\p{N}_]+/gu) || [];
const got = toks(body), exp = toks(want.text);
if (!got.length || !exp.length) return got.length === exp.length ? 1 : 0;
const left = new Map();
for (const t of exp) left.set(t, (left.get(t) || 0) + 1);
let common = 0;
for (const t of got) if (left.get(t) > 0) { common++; left.set(t, left.get(t) - 1); }
if (!common) return 0;
const p = common / got.length, r = common / exp.length;
return 2 * p * r / (p + r);"""

_JS_JSON_FIELDS = r"""const parse = () => {
  try { return JSON.parse(body); } catch (e) {}
  for (let start = body.indexOf("\x7b"); start !== -1; start = body.indexOf("\x7b", start + 1)) {
    let depth = 0, inString = false, escaped = false;
    for (let i = start; i < body.length; i++) {
      const ch = body[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === "\\") escaped = true;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === "\x7b") depth++;
      else if (ch === "\x7d" && --depth === 0) {
        try { return JSON.parse(body.slice(start, i + 1)); } catch (e) { break; }
      }
    }
  }
  return null;
};
const asNumber = (v) => {
  if (typeof v === "boolean") return null;
  if (typeof v === "number") return v;
  if (typeof v === "string" && new RegExp("^" + WS + "*-?[\\d,]*\\.?\\d+" + WS + "*$").test(ascii(v))) return Number(strip(ascii(v)).replace(/,/g, ""));
  return null;
};
const str = (v) => (v === true ? "True" : v === false ? "False" : typeof v === "object" ? JSON.stringify(v) : String(v));
const equal = (g, w) => {
  if (w === null || w === undefined) return g === null || g === undefined || (typeof g === "string" && ["", "null", "none"].includes(norm(g)));
  const wn = asNumber(w), gn = asNumber(g);
  if (wn !== null && typeof w !== "string") return gn !== null && close(gn, wn, @TOLERANCE@);
  if (g === null || g === undefined) return false;
  return norm(str(g)) === norm(str(w));
};
const got = parse();
const exp = want.value;
const fields = @FIELDS@;
const keys = fields.length ? fields : (exp && typeof exp === "object" ? Object.keys(exp) : []);
if (!got || typeof got !== "object" || Array.isArray(got) || !exp || typeof exp !== "object" || Array.isArray(exp) || !keys.length) return 0;
return keys.filter((k) => equal(got[k], exp[k])).length / keys.length;"""

_PY_METRIC = """import json, os, sys
from importlib import import_module
sys.path.insert(0, os.getcwd())  # the metric's module, as migrator imported it from where it ran
expected = json.loads(context["vars"]["_expected"]["json"])  # as migrator read it (JS has no 3.0)
score = float(import_module(@MODULE@).@FUNCTION@(output, expected))
return min(1.0, max(0.0, score))"""


def _assertion(metric: MetricSpec) -> dict[str, Any]:
    """One assertion for every test: the winner's metric, reading the test's ``_expected`` var.

    promptfoo passes a test when the score is 1 (``threshold``), as migrator counts a
    fully right answer; fractional metrics (f1, json_fields) also report their score.
    """
    name = metric.name
    tol = repr(float(metric.tolerance))
    if name.startswith("python:"):
        module, _, function = name.removeprefix("python:").partition(":")
        value = fill_in(_PY_METRIC, {"MODULE": json.dumps(module), "FUNCTION": function})
        return {"type": "python", "value": value, "threshold": 1.0}
    body = {
        "label": lambda: fill_in(_JS_LABEL, {"LABELS": json.dumps(list(metric.labels or ()))}),
        "numeric": lambda: fill_in(_JS_NUMERIC, {"TOLERANCE": tol}),
        "exact": lambda: _JS_EXACT,
        "f1": lambda: _JS_F1,
        "json_fields": lambda: fill_in(
            _JS_JSON_FIELDS, {"FIELDS": json.dumps(list(metric.fields or ())), "TOLERANCE": tol}
        ),
    }[name]()
    return {"type": "javascript", "value": f"{_JS_PRELUDE}\n{body}", "threshold": 1.0}


def _expected(value: Any) -> dict[str, Any]:
    """A test's expected value, with the readings of it migrator's metrics make."""
    try:
        number: float | None = float(value)
    except (TypeError, ValueError):
        number = None
    finite = number if number is not None and math.isfinite(number) else None
    return {"text": str(value), "value": value, "number": finite, "json": json.dumps(value, default=str)}


_ENV_REF = re.compile(r"\{\{[^}]*\benv\b")
_MARK = re.compile("\x00migrator-var:([^\x00]*)\x00")


def _literal(text: str) -> str:
    """Text that promptfoo's Nunjucks must pass through unchanged."""
    return "{% raw %}" + text + "{% endraw %}" if "{" in text or "}" in text else text


def _as_nunjucks(rendered: str) -> str:
    """A prompt rendered with marker values, with the markers turned into ``{{ var }}``."""
    parts = _MARK.split(rendered)
    return "".join(f"{{{{ {p} }}}}" if i % 2 else _literal(p) for i, p in enumerate(parts) if p or i % 2)


def _fill(template: str, inputs: Mapping[str, Any]) -> str:
    """What promptfoo makes of ``_as_nunjucks`` output for inputs ``_plain`` accepts (the self-check)."""
    out = re.sub(r"\{% raw %\}(.*?)\{% endraw %\}", lambda m: m.group(1).replace("{{", "\x01"), template, flags=re.S)
    out = re.sub(r"\{\{ (\w+) \}\}", lambda m: str(inputs[m.group(1)]), out)
    return out.replace("\x01", "{{")


def _plain(value: Any) -> bool:
    """An input promptfoo passes to a template as it is: a string it does not load a file
    for, trim, or render as a template (it does all three to string vars)."""
    return (
        isinstance(value, str)
        and not value.endswith("\n")
        and "{" not in value
        and "}" not in value
        and not value.startswith(("file://", "package:"))
    )


def _shared_prompt(lock: WinnerLock, tests: Sequence[Mapping[str, Any]]) -> str | None:
    """The winner's prompt as one promptfoo template, if it is exactly what migrator sends.

    That holds with fixed demos, variables used as plain substitutions, and inputs that
    promptfoo sends unchanged (``_plain``). Checked against every test's exact prompt;
    None means each test carries its own.
    """
    from migrator.prompts import Demo, PromptTemplate

    if lock.demos.strategy == "knn" and lock.demos.k:
        return None
    names = sorted({k for t in tests for k in t["inputs"]})
    if not tests or not all(n.isidentifier() and not n.startswith("_") for n in names):
        return None
    if not all(_plain(v) for t in tests for v in t["inputs"].values()):
        return None
    template = PromptTemplate(tuple((m.role, m.content) for m in lock.messages))
    marks = {n: f"\x00migrator-var:{n}\x00" for n in names}
    fixed = [Demo(d.inputs, d.answer) for d in lock.demos.fixed]
    try:
        if isinstance(tests[0]["prompt"], str):
            shared = _as_nunjucks(template.render_text(marks, fixed))
            same = all(_fill(shared, t["inputs"]) == t["prompt"] for t in tests)
        else:
            messages = [{**m, "content": _as_nunjucks(m["content"])} for m in template.render(marks, fixed)]
            shared = json.dumps(messages, ensure_ascii=False)
            same = all(
                [{**m, "content": _fill(m["content"], t["inputs"])} for m in messages] == t["prompt"] for t in tests
            )
    except Exception:  # a template that needs real values (filters, conditions) cannot be shared
        return None
    return shared if same and "\x00" not in shared else None


class _QuotedDumper(yaml.SafeDumper):
    """Quotes the strings that promptfoo's YAML 1.2 parser would read as something else
    (PyYAML, a YAML 1.1 writer, leaves `1e3` and `0o17` bare); multi-line ones as blocks."""


# what a YAML 1.2 core-schema reader takes for a number, a boolean or null
_YAML12_NOT_A_STRING = re.compile(
    r"[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?|[-+]?0[oxb][0-9a-fA-F_]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    r"|true|True|TRUE|false|False|FALSE|null|Null|NULL|~"
)


def _quoted_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and value.replace("\n", "").isprintable():
        style: str | None = "|"
    elif not value.isprintable() or _YAML12_NOT_A_STRING.fullmatch(value):
        style = '"'  # escapes, so a NEL or a BOM is not read as a line break or dropped
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_QuotedDumper.add_representer(str, _quoted_str)


def promptfoo_config(lock: WinnerLock, tests: Sequence[Mapping[str, Any]]) -> str:
    """promptfooconfig.yaml: the winner's prompt and provider, the test split as test cases.

    ``tests`` carry each example's id, inputs, expected value and ``prompt``: exactly what
    the winner sends for it (see ``Lockfile.prompt_for``). promptfoo then scores the same
    requests migrator scored, with the same metric.
    """
    shared = _shared_prompt(lock, tests)
    chat = not tests or not isinstance(tests[0]["prompt"], str)
    # Otherwise each test carries its prompt, and nothing else, in vars that are not
    # strings: promptfoo inserts those as they are, where it renders string vars.
    prompt = shared or ("{{ _messages | dump }}" if chat else "{{ _prompt.text }}")
    own = lock.metric.name == "assertions"
    cases = [_test_case(t, shared=shared is not None, chat=chat, own=own) for t in tests]
    config = {
        "description": f"migrator winner for {lock.name}: {lock.model} · {lock.prompt_id} (spec {lock.spec_hash})",
        "prompts": [{"id": lock.prompt_id, "raw": prompt}],
        "providers": [_promptfoo_provider(lock)],
        **({} if own else {"defaultTest": {"assert": [_assertion(lock.metric)]}}),
        "tests": cases,
    }
    body = yaml.dump(config, Dumper=_QuotedDumper, sort_keys=False, allow_unicode=True, width=120)
    return "".join(n + "\n" for n in _notes(prompt, cases, shared=shared is not None)) + str(body)


def _test_case(test: Mapping[str, Any], *, shared: bool, chat: bool, own: bool = False) -> dict[str, Any]:
    """One promptfoo test: its inputs (with a shared prompt) or its exact prompt, and ``_expected``.

    With ``own``, the expected value is the test's promptfoo assertions: they are its ``assert``,
    and the vars a script assertion reads (``context.vars``) are the test's vars again.
    """
    if shared:
        given = dict(test["inputs"])
    else:
        given = {"_messages": test["prompt"]} if chat else {"_prompt": {"text": test["prompt"]}}
    if not own:
        return {"description": str(test["id"]), "vars": {**given, "_expected": _expected(test["expected"])}}
    read: dict[str, Any] = {}
    checks = [_check(a, read) for a in test["expected"]]
    return {"description": str(test["id"]), "vars": {**read, **given}, "assert": checks}


def _check(assertion: Mapping[str, Any], read: dict[str, Any]) -> dict[str, Any]:
    """A promptfoo assertion as promptfoo takes it: the vars it reads go to the test (into ``read``)."""
    read.update(assertion.get("vars") or {})
    out = {k: v for k, v in assertion.items() if k != "vars"}
    if isinstance(out.get("assert"), list):
        out["assert"] = [_check(a, read) for a in out["assert"]]
    return out


def _notes(prompt: str, cases: Sequence[Mapping[str, Any]], *, shared: bool) -> list[str]:
    """The comment lines above the config: how the prompts are carried, what to set to run it."""
    notes = []
    if not shared:
        notes.append("# each test carries the exact prompt the winner sends for it (demos per input, or inputs")
        notes.append("# promptfoo would change as template vars)")
    if _ENV_REF.search(json.dumps([prompt, cases], ensure_ascii=False)):
        # promptfoo expands {{ env.NAME }} anywhere in its config, test vars included, before
        # it reads the config's own `env:`; only the process environment can stop that
        notes.append(
            "# some inputs or demos contain {{ env... }}: run with PROMPTFOO_DISABLE_TEMPLATE_ENV_VARS=true,"
            " or promptfoo sends your environment's values in their place"
        )
    return notes
