"""promptfoo's assertions as a score: what the ``assertions`` metric computes, with no network.

A row's expected value is its test's assertions, each ``{type, value, weight?}`` as promptfoo
writes them; ``not-`` before a type inverts it. A test scores as promptfoo scores one: the
weighted mean of its assertions (weight 1 unless given, 0 counts for nothing; no assertion at
all scores 1). A check scores 1 or 0, except a ``javascript`` or ``python`` assertion that
returns a number, which is its score (a ``not-`` flips promptfoo's pass, not that number).

Scored here: equals, contains, icontains, contains-any/-all, icontains-any/-all, starts-with,
regex, is-json and contains-json (with or without a JSON schema), levenshtein, assert-set;
``javascript`` in its common one-line forms, recognised by pattern and checked in Python (no
JavaScript runs); ``python`` one-line expressions over ``output``; ``similar`` (``:cosine``,
``:dot``, ``:euclidean``) with a local embedding model (``migrator.similarity``, the optional
extra ``similarity``), so its scores are not promptfoo's, whose default is OpenAI's embeddings.
``unsupported`` says why any other assertion is not scored, and ``NEEDS_A_MODEL`` lists those
that need a model migrator does not run.

JavaScript's strings are followed where Python's differ: ``String(x)`` of numbers and booleans,
``trim``, ``length`` in UTF-16 units, strict ``===``, ``JSON.parse``, and regexes (``$`` only at
the very end, ``\\d``, ``\\w`` and ``\\b`` ASCII, ``(?<name>``).
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import yaml

from migrator import similarity

__all__ = ["NEEDS_A_MODEL", "RUBRIC", "answer", "describe", "rubrics", "score", "unsupported"]

# The raw result of one check: pass or fail, a script's own score, or None when the check
# itself failed (an invalid regex or schema, a script that raised): promptfoo fails those
# whatever the `not-`.
_Raw = bool | float | None
_Check = Callable[[str, Mapping[str, Any]], _Raw]

# Assertions that need a model migrator does not run per assertion. A suite scored by one
# llm-rubric and nothing else becomes the judge metric (migrator.judge, in the importer); here a
# model-backed check plugs in as a check in _CHECKS that takes its grader (as `similar` does,
# with migrator.similarity); until then the importer lists these as not translated, with the reason.
# scored by the judge (``migrator.judge.RubricGrader``), which passes ``score`` its grades
RUBRIC = "llm-rubric"
NEEDS_A_MODEL: dict[str, str] = {
    **dict.fromkeys(
        (
            "agent-rubric",
            "trajectory:goal-success",
            "factuality",
            "model-graded-closedqa",
            "model-graded-factuality",
            "g-eval",
            "answer-relevance",
            "context-faithfulness",
            "context-recall",
            "context-relevance",
            "conversation-relevance",
            "search-rubric",
            "select-best",
            "max-score",
            "pi",
        ),
        "needs an LLM judge migrator does not have for this kind (its judge grades llm-rubric)",
    ),
    "classifier": "needs a classifier model",
    "moderation": "needs a moderation model",
}

_NOT_THE_REPLY = {
    **dict.fromkeys(
        ("latency", "cost"), "scores the call, not the reply: `objective: [quality, cost, latency]` weighs it"
    ),
    **dict.fromkeys(("perplexity", "perplexity-score"), "needs the reply's log-probabilities"),
    **dict.fromkeys(
        (
            "is-valid-function-call",
            "is-valid-openai-function-call",
            "is-valid-openai-tools-call",
            "tool-call-f1",
            "finish-reason",
            "guardrails",
            "skill-used",
            "trace-error-spans",
            "trace-span-count",
            "trace-span-duration",
            "trajectory:tool-args-match",
            "trajectory:step-count",
            "trajectory:tool-sequence",
            "trajectory:tool-used",
        ),
        "reads the provider's response (tool calls, finish reason, traces), not the reply's text",
    ),
    "webhook": "calls a web service to grade",
    "ruby": "runs Ruby",
    "human": "is graded by a person",
}


# --- JavaScript's strings, where Python's differ ----------------------------------------

# what String.prototype.trim removes: WhiteSpace and LineTerminator
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _js_str(value: Any) -> str:
    """``String(value)`` as JavaScript writes it: ``true``, ``null``, ``4`` for 4.0."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _js_length(text: str) -> int:
    """``text.length``: UTF-16 code units, so an emoji counts 2."""
    return len(text.encode("utf-16-le")) // 2


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_parse(text: str) -> Any:
    """``JSON.parse``: strict JSON (no NaN or Infinity), surrounding JSON whitespace allowed."""
    return json.loads(text, parse_constant=_no_constants)


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _strict_equal(a: Any, b: Any) -> bool:
    """``a === b`` for JSON values and literals (no object is === another)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _same_number(a, b):
        return True
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def _loose_equal(a: Any, b: Any) -> bool:
    """``a == b`` for JSON values and literals: a number and a numeric string compare as numbers."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    if type(a) is type(b) or (_is_num(a) and _is_num(b)):
        return _strict_equal(a, b)
    try:
        return _to_number(a) == _to_number(b)
    except ValueError:
        return False


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        return 0.0 if text == "" else float(text)
    return float(value)


def _deep_equal(a: Any, b: Any) -> bool:
    """Node's ``isDeepStrictEqual`` for JSON values: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return _strict_equal(a, b)


# --- the deterministic checks -----------------------------------------------------------


def _equals(output: str, a: Mapping[str, Any]) -> _Raw:
    value = a.get("value")
    if isinstance(value, (dict, list)):  # promptfoo compares an object with the reply parsed as JSON
        try:
            return _deep_equal(_json_parse(output), value)
        except ValueError:
            return False
    return output == _js_str(value)


def _values(value: Any) -> list[str]:
    """A contains-any/-all value: a list, or a text of comma-separated values (a quoted one may hold commas)."""
    if isinstance(value, list):
        return [_js_str(v) for v in value]
    parts = re.findall(r'\s*"([^"]*)"\s*|([^,]+)', str(value))
    return [q if q else p.strip() for q, p in parts if q or p.strip()]


def _contains(output: str, a: Mapping[str, Any]) -> _Raw:
    return _js_str(a["value"]) in output


def _icontains(output: str, a: Mapping[str, Any]) -> _Raw:
    return _js_str(a["value"]).lower() in output.lower()


def _contains_any(output: str, a: Mapping[str, Any]) -> _Raw:
    return any(v in output for v in _values(a["value"]))


def _contains_all(output: str, a: Mapping[str, Any]) -> _Raw:
    return all(v in output for v in _values(a["value"]))


def _icontains_any(output: str, a: Mapping[str, Any]) -> _Raw:
    return any(v.lower() in output.lower() for v in _values(a["value"]))


def _icontains_all(output: str, a: Mapping[str, Any]) -> _Raw:
    return all(v.lower() in output.lower() for v in _values(a["value"]))


def _starts_with(output: str, a: Mapping[str, Any]) -> _Raw:
    return output.startswith(_js_str(a["value"]))


def _regex(output: str, a: Mapping[str, Any]) -> _Raw:
    pattern = _python_regex(str(a["value"]))
    return None if pattern is None else pattern.search(output) is not None


# JavaScript's \s (Unicode white space and line terminators), as the body of a character class
_JS_SPACE_CLASS = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


@lru_cache(maxsize=1024)
def _python_regex(source: str) -> re.Pattern[str] | None:
    """``new RegExp(source)`` (no flags) as a Python pattern; None when it does not compile."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            nxt = source[i + 1]
            if nxt == "s":
                out.append(_JS_SPACE_CLASS if in_class else f"[{_JS_SPACE_CLASS}]")
            elif nxt == "S" and not in_class:
                out.append(f"[^{_JS_SPACE_CLASS}]")
            elif nxt == "/":
                out.append("/")
            else:
                out.append(source[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "$":
            out.append(r"\Z")  # JavaScript's $ never matches before a final newline
        elif source.startswith("(?<", i) and i + 3 < len(source) and source[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    try:
        # ASCII: JavaScript's \d, \w and \b know only ASCII (its \s is spelled out above)
        return re.compile("".join(out), re.ASCII)
    except (re.error, OverflowError, RecursionError):
        return None


def _schema(value: Any) -> Any:
    """A JSON schema given as an object, or as YAML or JSON text (promptfoo reads it with js-yaml)."""
    return yaml.safe_load(value) if isinstance(value, str) else value


def _conforms(instance: Any, schema: Any) -> bool | None:
    """Whether ``instance`` validates against ``schema``; None when the schema itself is invalid."""
    import jsonschema  # litellm's dependency, loaded only for a schema

    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        return bool(validator(schema).is_valid(instance))
    except (jsonschema.exceptions.SchemaError, TypeError, ValueError):
        return None


def _is_json(output: str, a: Mapping[str, Any]) -> _Raw:
    try:
        parsed = _json_parse(output)
    except ValueError:
        return False
    if a.get("value") in (None, ""):
        return True
    try:
        return _conforms(parsed, _schema(a["value"]))
    except yaml.YAMLError:
        return None


def _json_objects(text: str) -> list[Any]:
    """The JSON objects in a text, as promptfoo 0.121 finds them.

    From each ``{``, up to where the braces balance (or the text ends, closed with the ``}`` it
    lacks), read as YAML with ``//`` comments dropped: ``{a: 1}`` and ``{"a": 1 // why}`` count.
    """
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] != "{":
            i += 1
            continue
        opened, closed, j = 1, 0, i + 1
        end = min(i + _MAX_JSON, len(text))
        while j < end and opened > closed:
            opened += text[j] == "{"
            closed += text[j] == "}"
            j += 1
            if opened == closed or j == len(text) or j == i + _MAX_JSON:
                parsed = _yaml_object(_hash_comments(text[i:j] + "}" * max(0, opened - closed)))
                if parsed is not None:
                    found.append(parsed)
                    i = j - 1
                    break
                if opened == closed:
                    break
        i += 1
    return found


_MAX_JSON = 100_000


def _yaml_object(text: str) -> Any:
    try:
        parsed = yaml.safe_load(text)
    except (yaml.YAMLError, TypeError, ValueError):  # TypeError: a mapping as a key
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


def _hash_comments(text: str) -> str:
    """``//`` comments outside quotes as YAML's ``#`` (a ``://`` in a URL is kept)."""
    lines = []
    for line in text.split("\n"):
        out, quote, k = [], "", 0
        while k < len(line):
            ch = line[k]
            if not quote and line.startswith("//", k) and "://" not in line[line.rfind(" ", 0, k) + 1 : k + 2]:
                slashes = len(line[k:]) - len(line[k:].lstrip("/"))
                out.append("#" * (slashes // 2) + line[k + slashes :])
                break
            if quote and ch == quote and line[k - 1] != "\\" and not (quote == "'" and line[k + 1 : k + 2].isalpha()):
                quote = ""
            elif not quote and (ch == '"' or (ch == "'" and not line[k - 1 : k].isalpha())):
                quote = ch
            out.append(ch)
            k += 1
        lines.append("".join(out))
    return "\n".join(lines)


def _contains_json(output: str, a: Mapping[str, Any]) -> _Raw:
    objects = _json_objects(output)
    if a.get("value") in (None, ""):
        return bool(objects)
    try:
        schema = _schema(a["value"])
    except yaml.YAMLError:
        return None
    verdicts = [_conforms(obj, schema) for obj in objects]
    if None in verdicts:
        return None
    return any(verdicts)


def _levenshtein(output: str, a: Mapping[str, Any]) -> _Raw:
    want = _js_str(a["value"])
    row = list(range(len(want) + 1))
    for i, c in enumerate(output, 1):
        prev, row[0] = row[0], i
        for j, d in enumerate(want, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (c != d))
    return row[-1] <= float(a.get("threshold") or 5)


# --- similar: embedding similarity, as promptfoo scores it ---------------------------------

_EPSILON = 2.220446049250313e-16  # JavaScript's Number.EPSILON: promptfoo's slack at the threshold


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _similar(output: str, a: Mapping[str, Any]) -> _Raw:
    """promptfoo's score: the cosine (1 - it under ``not-``); ``:euclidean`` 1 / (1 + distance).

    Against a list of values, the first that passes ``threshold`` (default 0.75) gives the
    score, else the closest; under ``not-`` the first that fails, else the closest. An empty
    reply fails (OpenAI's embeddings, promptfoo's default, refuse an empty text).
    """
    if not output.strip():
        return None
    kind = str(a["type"])
    inverse, metric = kind.startswith("not-"), kind.partition(":")[2] or "cosine"
    threshold = 0.75 if a.get("threshold") is None else float(a["threshold"])
    results = []
    for cosine in similarity.cosines(output, _listed(a["value"])):
        if metric == "euclidean":  # unit vectors: |u - v| from their cosine
            distance = math.sqrt(max(0.0, 2.0 - 2.0 * cosine))
            passed = distance >= threshold - _EPSILON if inverse else distance <= threshold + _EPSILON
            near = 1 / (1 + distance)
        else:  # cosine, and dot: the same number for unit vectors
            passed = cosine <= threshold + _EPSILON if inverse else cosine >= threshold - _EPSILON
            near = cosine
        results.append((passed, 1 - near if inverse else near))
    decisive = [s for passed, s in results if passed != inverse]  # a pass, or under `not-` a failure
    if decisive:
        return decisive[0]
    return min(s for _, s in results) if inverse else max(s for _, s in results)


# --- javascript: the one-line forms, recognised by pattern --------------------------------

_JS_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\$]|\\.)*`)
    | (?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op>===|!==|==|!=|<=|>=|[<>!().\[\];-])
    | (?P<name>[A-Za-z_$][\w$]*)
    )""",
    re.VERBOSE,
)
_JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _js_literal(token: str) -> str:
    """A JavaScript string literal's value."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u" and body[i + 2 : i + 3] == "{":
            end = body.index("}", i)
            out.append(chr(int(body[i + 3 : end], 16)))
            i = end + 1
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_JS_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


class _Unknown(Exception):
    """The JavaScript is not one of the forms translated here."""


_UNDEFINED = object()  # a property JSON.parse's result does not have
_Value = Callable[[Mapping[str, Any]], Any]  # a literal, or a test var read from context.vars


class _Parser:
    """The one-line JavaScript forms promptfoo suites use, as a check over (output, vars).

    ``[!] subject test``, where the subject is ``output`` with ``.trim()``, ``.toLowerCase()``
    or ``.toUpperCase()`` applied, or ``JSON.parse(output)`` with ``.field`` / ``['field']`` /
    ``[0]`` after it; the test is ``.includes(x)``, ``.startsWith(x)``, ``.endsWith(x)``,
    ``=== x`` (``==``, ``!==``, ``!=``) or ``.length < n`` (any comparison). ``x`` is a string,
    number, ``true``, ``false``, ``null`` or ``context.vars.name``. A final ``;`` may be there,
    and parentheses around the whole.
    """

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            match = _JS_TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise _Unknown
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.tokens) and (value is None or self.tokens[self.i][1] == value)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value) or (kind is not None and self.tokens[self.i][0] != kind):
            raise _Unknown
        self.i += 1
        return self.tokens[self.i - 1][1]

    def check(self) -> Callable[[str, Mapping[str, Any]], bool | None]:
        while self.tokens and self.tokens[-1][1] == ";":
            self.tokens.pop()
        while self.peek("(") and self.tokens[-1][1] == ")":
            self.take("(")
            self.tokens.pop()
        negate = self.peek("!")
        if negate:
            self.take("!")
        test = self.json_test() if self.peek("JSON") else self.text_test()
        if self.i != len(self.tokens):
            raise _Unknown

        def run(output: str, context: Mapping[str, Any]) -> bool | None:
            got = test(output, context)
            return None if got is None else got != negate

        return run

    def subject(self) -> Callable[[str], str]:
        self.take("output")
        steps: list[Callable[[str], str]] = []
        while (
            self.peek(".")
            and self.i + 1 < len(self.tokens)
            and self.tokens[self.i + 1][1] in ("trim", "toLowerCase", "toUpperCase")
        ):
            self.take(".")
            name = self.take()
            self.take("(")
            self.take(")")
            steps.append(
                {"trim": lambda s: s.strip(_JS_WHITESPACE), "toLowerCase": str.lower, "toUpperCase": str.upper}[name]
            )

        def apply(text: str) -> str:
            for step in steps:
                text = step(text)
            return text

        return apply

    def text_test(self) -> Callable[[str, Mapping[str, Any]], bool | None]:
        subject = self.subject()
        if self.peek("."):
            self.take(".")
            method = self.take(kind="name")
            if method == "length":
                op, n = self.take(kind="op"), self.number()
                compare = _COMPARE.get(op)
                if compare is None:
                    raise _Unknown
                return lambda output, ctx: compare(_js_length(subject(output)), n)
            if method not in _STRING_TESTS:
                raise _Unknown
            self.take("(")
            arg = self.value()
            self.take(")")
            test = _STRING_TESTS[method]
            return lambda output, ctx: test(subject(output), _js_str(arg(ctx)))
        op = self.take(kind="op")
        other = self.value()
        equal = _EQUALITY.get(op)
        if equal is None:
            raise _Unknown
        return lambda output, ctx: equal(subject(output), other(ctx))

    def json_test(self) -> Callable[[str, Mapping[str, Any]], bool | None]:
        for part in ("JSON", ".", "parse", "(", "output", ")"):
            self.take(part)
        path: list[str | int] = []
        while self.peek(".") or self.peek("["):
            if self.take() == ".":
                path.append(self.take(kind="name"))
                continue
            kind, token = self.tokens[self.i] if self.peek() else ("", "")
            if kind == "str":
                path.append(_js_literal(token))
            elif kind == "num" and token.isdigit():
                path.append(int(token))
            else:
                raise _Unknown
            self.take()
            self.take("]")
        op = self.take(kind="op")
        equal = _EQUALITY.get(op)
        if equal is None:
            raise _Unknown
        other = self.value()

        def test(output: str, ctx: Mapping[str, Any]) -> bool | None:
            try:
                got = _json_parse(output)
            except ValueError:
                return None  # JSON.parse throws: the assertion fails
            for key in path:
                if got is None or got is _UNDEFINED:
                    return None  # reading a property of null or undefined throws
                if isinstance(got, dict):
                    got = got.get(str(key), _UNDEFINED)
                elif isinstance(got, list) and isinstance(key, int):
                    got = got[key] if 0 <= key < len(got) else _UNDEFINED
                elif isinstance(got, (list, str)) and key == "length":
                    got = _js_length(got) if isinstance(got, str) else len(got)
                else:
                    got = _UNDEFINED
            return False if got is _UNDEFINED else equal(got, other(ctx))

        return test

    def number(self) -> float:
        sign = -1.0 if self.peek("-") else 1.0
        if sign < 0:
            self.take("-")
        return sign * float(self.take(kind="num"))

    def value(self) -> _Value:
        if self.peek("-") or (self.peek() and self.tokens[self.i][0] == "num"):
            n = self.number()
            return lambda ctx: n
        kind, token = self.tokens[self.i] if self.peek() else ("", "")
        if kind == "str":
            self.take()
            text = _js_literal(token)
            return lambda ctx: text
        if token in ("true", "false", "null"):
            self.take()
            literal = {"true": True, "false": False, "null": None}[token]
            return lambda ctx: literal
        if token == "context":
            for part in ("context", ".", "vars"):
                self.take(part)
            if self.peek("["):
                self.take("[")
                name = _js_literal(self.take(kind="str"))
                self.take("]")
            else:
                self.take(".")
                name = self.take(kind="name")
            return lambda ctx: ctx.get("vars", {}).get(name)
        raise _Unknown


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "includes": lambda text, part: part in text,
    "startsWith": lambda text, part: text.startswith(part),
    "endsWith": lambda text, part: text.endswith(part),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "===": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!==": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
}
_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {
    "===": _strict_equal,
    "!==": lambda a, b: not _strict_equal(a, b),
    "==": _loose_equal,
    "!=": lambda a, b: not _loose_equal(a, b),
}


@lru_cache(maxsize=1024)
def _javascript_check(text: str) -> Callable[[str, Mapping[str, Any]], bool | None] | None:
    expression = _script_expression(text, "//", trim_end=True)
    if expression is None:
        return None
    try:
        return _Parser(expression).check()
    except (_Unknown, ValueError, IndexError):
        return None


def _script_expression(text: str, comment: str, trim_end: bool = False) -> str | None:
    """The expression a script assertion returns, as promptfoo runs it; None when it is no single one.

    One line is an expression (promptfoo writes ``return`` before it); a text with a line break
    is a function body, which is one here only as a single ``return <expression>`` (and comment
    lines). promptfoo trims the end of JavaScript first, so a YAML block's last newline does not count.
    """
    if trim_end:
        text = text.rstrip(_JS_WHITESPACE)
    if "\n" not in text:
        stripped = text.strip()
        return None if re.match(r"return\b", stripped) else stripped
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(comment)]
    if len(lines) == 1 and re.match(r"return\b", lines[0]):
        return lines[0][len("return") :].strip()
    return None


def _javascript(output: str, a: Mapping[str, Any]) -> _Raw:
    check = _javascript_check(str(a["value"]))
    if check is None:
        raise ValueError(f"a JavaScript form migrator does not translate: {a['value']!r}")
    return check(output, {"vars": a.get("vars") or {}})


# --- python: a one-line expression over `output` -----------------------------------------

# The names an expression may use. This is the user's own test suite, which promptfoo runs
# with a full Python; the short list keeps a slip (a typo'd name, an import) from reaching
# further than the reply, it is no sandbox against code written to escape one.
_PY_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "isinstance", "len", "list",
        "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip",
    )
}  # fmt: skip
_PY_MODULES = {"json": json, "re": re, "math": math}


@lru_cache(maxsize=1024)
def _python_code(text: str) -> Any:
    """The compiled expression, or a string saying why it is not one migrator evaluates."""
    expression = _script_expression(text, "#")
    if expression is None:
        return "not one expression (a function body other than a single `return <expression>` runs only in promptfoo)"
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return "not a Python expression"
    bound = {"output", "context", *_PY_BUILTINS, *_PY_MODULES}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)  # a comprehension's or a walrus's own name
        elif isinstance(node, ast.arg):
            bound.add(node.arg)  # a lambda's parameter
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("__"):
            return f"reaches into Python's internals ({name})"
        if isinstance(node, ast.Name) and name not in bound:
            return (
                f"uses {name!r}, which is neither `output`, `context`, json, re, math nor a builtin migrator provides"
            )
    return compile(tree, "<promptfoo python assertion>", "eval")


def _python(output: str, a: Mapping[str, Any]) -> _Raw:
    code = _python_code(str(a["value"]))
    if isinstance(code, str):
        raise ValueError(code)
    context = {"vars": dict(a.get("vars") or {}), "config": dict(a.get("config") or {}), "prompt": None}
    try:
        result = eval(code, {"__builtins__": _PY_BUILTINS, **_PY_MODULES}, {"output": output, "context": context})
    except Exception:  # the expression raised: promptfoo fails the assertion
        return None
    return _script_result(result, a)


def _script_result(result: Any, a: Mapping[str, Any]) -> _Raw:
    """A script's return value as promptfoo reads it: a boolean, "true"/"false", a number, or {pass, score}."""
    if isinstance(result, bool):
        return result
    if isinstance(result, str) and result.lower() in ("true", "false"):
        return result.lower() == "true"
    if isinstance(result, dict) and isinstance(result.get("score"), (int, float)):
        return _finite(float(result["score"]))
    if isinstance(result, (int, float)):
        return _finite(float(result))
    return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


_CHECKS: dict[str, _Check] = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _icontains,
    "contains-any": _contains_any,
    "contains-all": _contains_all,
    "icontains-any": _icontains_any,
    "icontains-all": _icontains_all,
    "starts-with": _starts_with,
    "regex": _regex,
    "is-json": _is_json,
    "contains-json": _contains_json,
    "levenshtein": _levenshtein,
    "javascript": _javascript,
    "python": _python,
    **dict.fromkeys(("similar", "similar:cosine", "similar:dot", "similar:euclidean"), _similar),
}
_NEEDS_VALUE = frozenset(_CHECKS) - {"is-json", "contains-json"}


# --- the face --------------------------------------------------------------------------


def unsupported(assertion: Mapping[str, Any]) -> str | None:
    """None when ``score`` scores this assertion; else why not, in a few words."""
    kind = assertion.get("type")
    if not isinstance(kind, str):
        return "has no `type`"
    if kind == "assert-set":
        inner = assertion.get("assert")
        if not isinstance(inner, list) or not inner:
            return "an assert-set with no assertions"
        reasons = [r for r in (unsupported(a) if isinstance(a, Mapping) else "not a mapping" for a in inner) if r]
        return f"holds an assertion that {reasons[0]}" if reasons else None
    for key in ("transform", "contextTransform"):
        if assertion.get(key):
            return f"transforms the reply first (`{key}`)"
    base = kind.removeprefix("not-")
    if base == RUBRIC:
        if kind != RUBRIC:
            return f"`{kind}` is not translated (the judge scores `{RUBRIC}` only)"
        value = assertion.get("value")
        return None if isinstance(value, str) and value.strip() else "has no rubric text as its `value`"
    if base in NEEDS_A_MODEL:
        return NEEDS_A_MODEL[base]
    if base in _NOT_THE_REPLY:
        return _NOT_THE_REPLY[base]
    if base not in _CHECKS:
        return "not translated yet"
    value = assertion.get("value")
    if base in _NEEDS_VALUE and (value is None or value == ""):
        return "has no `value`"
    if isinstance(value, str) and value.startswith("file://"):
        return "runs or reads a file (`file://`)" if base in ("javascript", "python") else "reads its value from a file"
    return _unscoreable(base, assertion)


def _unscoreable(base: str, assertion: Mapping[str, Any]) -> str | None:
    value = assertion.get("value")
    if base == "javascript":
        return None if _javascript_check(str(value)) else "a JavaScript form migrator does not translate"
    if base == "python":
        code = _python_code(str(value))
        return code if isinstance(code, str) else None
    if base == "regex" and _python_regex(str(value)) is None:
        return "a regex Python cannot compile"
    if base in ("is-json", "contains-json") and value not in (None, ""):
        try:
            if _conforms(None, _schema(value)) is None:
                return "its JSON schema is invalid"
        except yaml.YAMLError:
            return "its JSON schema is not YAML or JSON"
    if base in ("contains-any", "contains-all", "icontains-any", "icontains-all") and not _values(value):
        return "has no values"
    if base.startswith("similar"):
        if value == []:
            return "has no values"
        if not all(isinstance(v, str) for v in _listed(value)):
            return "its value is not a text or a list of texts"
        threshold = assertion.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            return "has a threshold that is not a number"
        why = similarity.missing()
        return None if why is None else f"needs the optional extra `similarity`: {why}"
    return None


def rubrics(assertions: Any) -> list[str]:
    """The ``llm-rubric`` texts among a test's assertions (assert-sets included), each once, in order."""
    found: list[str] = []
    for assertion in assertions if isinstance(assertions, list) else ():
        if not isinstance(assertion, Mapping):
            continue
        if assertion.get("type") == "assert-set":
            found += rubrics(assertion.get("assert"))
        elif assertion.get("type") == RUBRIC and isinstance(assertion.get("value"), str):
            found.append(assertion["value"])
    return list(dict.fromkeys(found))


def score(output: str, assertions: Sequence[Mapping[str, Any]], graded: Mapping[str, float] | None = None) -> float:
    """The reply's score on a test's assertions, as promptfoo scores the test (in [0, 1]).

    ``graded``: each ``llm-rubric``'s score from the judge (``migrator.judge``), by rubric text.

    Raises:
        ValueError: ``assertions`` is not a list of assertions, or holds one ``unsupported``
            refuses (the importer leaves those out).
    """
    if not isinstance(assertions, list) or not all(isinstance(a, Mapping) for a in assertions):
        raise ValueError(
            f"the assertions metric reads a list of {{type, value}} per row, got {type(assertions).__name__}"
        )
    if not assertions:
        return 1.0  # promptfoo passes a test with no assertions
    return min(1.0, max(0.0, _mean(output, assertions, graded or {})))


def _mean(output: str, assertions: Sequence[Mapping[str, Any]], graded: Mapping[str, float]) -> float:
    total = weights = 0.0
    for assertion in assertions:
        weight = float(assertion.get("weight", 1))
        total += _one(output, assertion, graded) * weight
        weights += weight
    return total / weights if weights > 0 else 0.0


def _one(output: str, assertion: Mapping[str, Any], graded: Mapping[str, float]) -> float:
    kind = str(assertion.get("type"))
    if kind == "assert-set":
        return _mean(output, assertion.get("assert") or [], graded)
    if kind == RUBRIC:
        rubric = assertion.get("value")
        if not isinstance(rubric, str) or rubric not in graded:
            raise ValueError(f"an {RUBRIC} needs the judge: set metric.model to the model that grades it ({rubric!r})")
        return graded[rubric]
    check = _CHECKS.get(kind.removeprefix("not-"))
    try:
        if check is None:
            raise KeyError(kind)
        raw = check(output, assertion)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"assertion {dict(assertion)} is not one migrator scores: {unsupported(assertion)}") from exc
    if raw is None:
        return 0.0
    if isinstance(raw, bool):
        return float(raw != kind.startswith("not-"))
    return raw


def answer(expected: Any) -> str | None:
    """The literal reply a test's assertions stand for (its ``equals`` value), for a demo; None when there is none.

    A text is its own answer: a lockfile's demo pool keeps the answer, not the assertions.
    """
    if isinstance(expected, str):
        return expected
    for assertion in expected if isinstance(expected, list) else ():
        if assertion.get("type") == "equals" and "value" in assertion and float(assertion.get("weight", 1)) > 0:
            value = assertion["value"]
            return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else _js_str(value)
    return None


def describe(expected: Any) -> str:
    """What the assertions ask of a reply, in one line, for a proposer reading a failure."""
    if isinstance(expected, str):
        return expected
    parts = []
    for assertion in expected if isinstance(expected, list) else ():
        kind = str(assertion.get("type"))
        if kind == "assert-set":
            parts.append(f"({describe(assertion.get('assert') or [])})")
            continue
        value = assertion.get("value")
        shown = "" if value in (None, "") else f" {json.dumps(value, ensure_ascii=False)[:120]}"
        parts.append(f"{kind}{shown}")
    return "a reply that passes: " + "; ".join(parts) if parts else "any reply"
