"""A promptfoo suite as an app: promptfooconfig.yaml's prompt, providers and tests.

Read as promptfoo documents its config:

- ``prompts``: inline text, ``file://`` text files (``---`` lines between prompts), JSON or YAML
  chat messages, ``{raw | id, label}`` objects, globs. The first is the app's; the others are
  named in the notes. A Nunjucks ``{{ var }}`` template is Jinja2's syntax; of the filters that
  differ, ``load`` (promptfoo's JSON.parse) is translated, ``dump``, ``nl2br`` and custom
  filters are refused with the prompt named.
- ``providers`` (or ``targets``): ids such as ``openai:chat:gpt-4o-mini`` or
  ``bedrock:anthropic.claude-3-haiku-20240307-v1:0``, or ``{id, config}``, as litellm ids. The
  first is the legacy model, its ``config`` the app's params; the others are candidates.
- ``defaultTest`` (vars, assert, options) and ``tests``: inline, or files: CSV (columns are vars;
  ``__expected``, ``__expected1``... hold assertions such as ``icontains: x``, a bare value being
  ``equals``), YAML, JSON, JSONL, globs and folders. An array var runs each combination, as in
  promptfoo.

Each test's expected value comes from its assertions: when every test checks one ``equals``, its
value (and ``guess_metric`` picks the metric, as for every importer); otherwise the test's
assertions themselves, scored by the ``assertions`` metric (``migrator.assertions``). What is not
carried over is named in the notes with where it was; a test with no assertion migrator scores is
left out and counted there.
"""

from __future__ import annotations

import csv
import glob
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from migrator import assertions
from migrator.errors import SourceError
from migrator.importers._draft import Draft, check_names, guess_metric
from migrator.prompts import PromptTemplate
from migrator.spec import read_yaml

__all__ = ["from_promptfoo"]

_CONFIG_NAMES = ("promptfooconfig.yaml", "promptfooconfig.yml", "promptfooconfig.json")
# top-level keys that say nothing about the app, its data or its scoring
_IGNORED_KEYS = frozenset(
    {"description", "outputPath", "sharing", "evaluateOptions", "commandLineOptions", "writeLatestResults",
     "tags", "metadata", "env", "extensions", "tracing", "$schema", "assertionTemplates"}
)  # fmt: skip
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_SHOWN = 5


# --- providers ---------------------------------------------------------------------------

# promptfoo's provider prefix -> litellm's provider. After the prefix may come a mode
# (``openai:chat:gpt-4o``); a mode that names no chat or completion model is refused by name.
_PROVIDERS: dict[str, str] = {
    "openai": "openai", "anthropic": "anthropic", "vertex": "vertex_ai", "google": "gemini",
    "bedrock": "bedrock", "ollama": "ollama", "azureopenai": "azure", "azure": "azure",
    "mistral": "mistral", "groq": "groq", "deepseek": "deepseek", "openrouter": "openrouter",
    "togetherai": "together_ai", "perplexity": "perplexity", "cohere": "cohere", "xai": "xai",
    "fireworks": "fireworks_ai", "huggingface": "huggingface", "cloudflare-ai": "cloudflare",
    "cerebras": "cerebras", "databricks": "databricks", "nvidia": "nvidia_nim", "ai21": "ai21",
    "replicate": "replicate", "watsonx": "watsonx", "litellm": "",
}  # fmt: skip
_CHAT_MODES = frozenset({"chat", "messages", "responses", "text-generation", "converse", "completion"})
_OTHER_MODES = frozenset(
    {"embedding", "embeddings", "image", "video", "live", "assistant", "assistants", "realtime", "moderation",
     "chatkit", "codex-sdk", "codex-app-server", "claude-agent-sdk", "agents", "transcription", "audio",
     "feature-extraction", "sentence-similarity", "text-classification", "token-classification"}
)  # fmt: skip
_NOT_MODELS = ("echo", "exec:", "file://", "python:", "http:", "https:", "webhook:", "sequence", "browser",
               "websocket", "ws:", "wss:", "golang:", "ruby:", "javascript:", "promptfoo:", "mcp", "manual-input",
               "simulated-user", "a2a:", "acp")  # fmt: skip
# promptfoo config names -> migrator's params (the ones it reads; see spec._PARAM_RULES)
_PARAM_NAMES = {
    "temperature": "temperature", "max_tokens": "max_tokens", "maxTokens": "max_tokens",
    "max_output_tokens": "max_tokens", "maxOutputTokens": "max_tokens", "top_p": "top_p", "topP": "top_p",
    "seed": "seed", "stop": "stop", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}  # fmt: skip
# a provider's own keys: a one-key mapping with none of them is {id: options}
_PROVIDER_KEYS = frozenset({"id", "label", "config", "prompts", "transform", "delay", "env", "inputs"})
_BASE_URL_KEYS = ("apiBaseUrl", "apiHost", "baseUrl", "basePath", "apiBase", "host")
_SILENT_CONFIG = frozenset({"apiKeyEnvar", "omitDefaults", "apiKeyRequired"})
# promptfoo's OpenAI provider sends these when its config does not (unless omitDefaults)
_OPENAI_DEFAULTS = {"temperature": 0, "max_tokens": 1024}


@dataclass(frozen=True)
class _Provider:
    where: str
    id: str
    model: str | None  # the litellm id, None when there is none
    why_not: str
    config: Mapping[str, Any]
    label: str
    prompts: tuple[str, ...]


def _litellm_model(provider_id: str) -> tuple[str | None, str]:
    """The litellm id of a promptfoo provider id, or None and why not."""
    if provider_id.startswith(_NOT_MODELS):
        return None, "not a model (an echo, script, file or HTTP provider): migrator calls models through litellm"
    prefix, sep, rest = provider_id.partition(":")
    if not sep or prefix not in _PROVIDERS or not rest:
        return None, "an unknown provider"
    mode, colon, name = rest.partition(":")
    if (colon and mode in _OTHER_MODES) or (not colon and rest in _OTHER_MODES):
        return None, f"a {mode} provider, not a chat or completion model"
    if not colon or mode not in _CHAT_MODES:
        mode, name = "", rest  # no mode: the rest is the model (bedrock and ollama names have colons)
    provider = _PROVIDERS[prefix]
    if prefix == "openai" and mode == "completion":
        provider = "text-completion-openai"
    elif prefix in ("azure", "azureopenai") and mode == "completion":
        provider = "azure_text"
    elif prefix == "ollama" and mode == "chat":
        provider = "ollama_chat"
    elif prefix == "bedrock" and mode == "converse":
        name = f"converse/{name}"
    elif prefix == "litellm":
        from migrator.models import litellm_id

        found = litellm_id(name)
        return (found, "") if found else (None, f"{name!r} is not in litellm's model map")
    return f"{provider}/{name}", ""


# --- prompts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    where: str
    label: str
    messages: tuple[tuple[str, str], ...] | None  # None: it cannot be the app's prompt
    why_not: str = ""


# Nunjucks filters Jinja2 lacks or renders otherwise; `load` is translated (see _jinja2_messages)
_NUNJUCKS_ONLY = {
    "dump": "Nunjucks' dump is JSON.stringify; Jinja2 has no dump (its tojson escapes <, >, & and ')",
    "nl2br": "Jinja2 has no nl2br",
}
_DIFFERS = {
    "truncate": "Jinja2's truncate keeps a text up to 5 characters longer than the length whole, Nunjucks' cuts it",
    "striptags": "Jinja2's striptags takes no preserve_linebreaks argument",
}
_PARSER = jinja2.Environment()
# promptfoo renders vars and assertion values as Nunjucks templates: undefined is empty there
_LENIENT = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_LENIENT.filters["load"] = json.loads
_LENIENT.filters["dump"] = lambda v, *a: json.dumps(v, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Tests:
    """What reading the tests found, besides the tests: what was left out, and where."""

    untranslated: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, what: str, where: str) -> None:
        self.untranslated.setdefault(what, []).append(where)

    def leave_out(self, why: str, where: str) -> None:
        self.left_out.setdefault(why, []).append(where)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class _Test:
    where: str
    description: str
    vars: Mapping[str, Any]
    asserts: tuple[Any, ...]
    options: Mapping[str, Any]
    threshold: Any = None
    why_not: str = ""  # what keeps it out, found while reading it

    @property
    def shown(self) -> str:
        return f'{self.where} "{_short(self.description)}"' if self.description else self.where


def _short(text: str, limit: int = 40) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _listed(places: Sequence[str]) -> str:
    more = len(places) - _SHOWN
    return ", ".join(places[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


class _Reader:
    """One config and the files it names; errors name the config file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent
        self.file = str(path)
        self.found = _Tests()

    def error(self, message: str, where: str | None = None) -> SourceError:
        return SourceError(message, file=self.file, where=where)

    def resolve(self, ref: str, where: str) -> list[Path]:
        """The files a ``file://`` reference (or a bare path) names: a glob's matches, a folder's files."""
        target = ref.removeprefix("file://")
        pattern = str(self.base / target)
        if glob.has_magic(target):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise self.error(f"{ref!r} matches no file", where)
            return found
        path = Path(pattern)
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".yaml", ".yml", ".json", ".jsonl"))
        if not path.is_file():
            raise self.error(f"file not found: {path}", where)
        return [path]

    def read_text(self, path: Path, where: str) -> str:
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise SourceError("not valid UTF-8", file=str(path)) from None
        except OSError as exc:
            raise self.error(f"cannot read {path}: {exc.strerror}", where) from None

    def structured(self, path: Path, where: str) -> Any:
        """A YAML or JSON file's content; its errors name that file."""
        if path.suffix.lower() == ".json":
            try:
                return json.loads(self.read_text(path, where))
            except json.JSONDecodeError as exc:
                raise SourceError(f"invalid JSON: {exc.msg}", file=str(path), where=f"line {exc.lineno}") from None
        return read_yaml(path, SourceError)

    # --- prompts

    def prompts(self, raw: Any) -> list[_Prompt]:
        if raw is None or raw == [] or raw == {}:
            raise self.error("no prompts: promptfoo's passthrough {{prompt}} is no app's prompt", "prompts")
        if isinstance(raw, Mapping):  # {file://a.txt: label, ...}
            raw = [{"id": k, "label": v} for k, v in raw.items()]
        items = raw if isinstance(raw, list) else [raw]
        out: list[_Prompt] = []
        for i, item in enumerate(items):
            where = f"prompts[{i}]"
            if isinstance(item, str):
                out += self._prompt_ref(item, where, label=None)
            elif isinstance(item, Mapping) and isinstance(item.get("raw", item.get("id")), str):
                label = str(item.get("label") or item.get("id") or "")
                if isinstance(item.get("raw"), str):
                    out.append(_text_prompt(item["raw"], where, label or _short(item["raw"])))
                else:
                    out += self._prompt_ref(item["id"], where, label=label)
            else:
                raise self.error("expected a prompt text, a file:// path or {raw | id, label}", where)
        return out

    def _prompt_ref(self, ref: str, where: str, label: str | None) -> list[_Prompt]:
        if not ref.startswith("file://"):
            if ref.startswith("exec:"):
                return [_Prompt(where, label or ref, None, "a prompt an executable writes")]
            return [_text_prompt(ref, where, label or _short(ref))]
        path_part = ref.removeprefix("file://")
        if re.search(r"\.(py|js|mjs|cjs|ts)(:\w+)?$", path_part):
            return [_Prompt(where, label or ref, None, "a prompt a function writes (file://...py or .js)")]
        out: list[_Prompt] = []
        for path in self.resolve(ref, where):
            shown = f"{where} ({path.name})"
            suffix = path.suffix.lower()
            if suffix in (".yaml", ".yml", ".json"):
                content = self.structured(path, where)
                if isinstance(content, str):
                    out.append(_text_prompt(content, shown, label or path.name))
                else:
                    out.append(_chat_prompt(content, shown, label or path.name))
            elif suffix == ".jsonl":
                lines = [line for line in self.read_text(path, where).splitlines() if line.strip()]
                for n, line in enumerate(lines, 1):
                    try:
                        content = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SourceError(f"invalid JSON: {exc.msg}", file=str(path), where=f"line {n}") from None
                    out.append(_chat_prompt(content, f"{shown} line {n}", label or f"{path.name}:{n}"))
            elif suffix == ".csv":
                out += self._csv_prompts(path, shown, label)
            else:
                parts = re.split(r"^---$", self.read_text(path, where), flags=re.MULTILINE)
                texts = [p.strip("\n") for p in parts if p.strip()]
                for n, text in enumerate(texts, 1):
                    out.append(_text_prompt(text, shown if len(texts) == 1 else f"{shown} #{n}", label or path.name))
        return out

    def _csv_prompts(self, path: Path, where: str, label: str | None) -> list[_Prompt]:
        try:
            rows = list(csv.reader(io.StringIO(self.read_text(path, where), newline="")))
        except csv.Error as exc:
            raise SourceError(f"unreadable CSV: {exc}", file=str(path)) from None
        header = [h.strip().lower() for h in rows[0]] if rows else []
        column = header.index("prompt") if "prompt" in header else 0
        body = rows[1:] if "prompt" in header else rows
        return [_text_prompt(r[column], f"{where} row {n}", label or path.name) for n, r in enumerate(body, 1) if r]

    # --- providers

    def providers(self, config: Mapping[str, Any]) -> list[_Provider]:
        key = "providers" if "providers" in config else "targets"
        raw = config.get(key)
        if raw is None or raw == []:
            raise self.error("no providers: the first is the legacy model", "providers")
        items = raw if isinstance(raw, list) else [raw]
        out: list[_Provider] = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if isinstance(item, str) and item.startswith("file://") and item.endswith((".yaml", ".yml", ".json")):
                for path in self.resolve(item, where):
                    loaded = self.structured(path, where)
                    for j, entry in enumerate(loaded if isinstance(loaded, list) else [loaded]):
                        out.append(self._provider(entry, f"{where} ({path.name}[{j}])"))
            else:
                out.append(self._provider(item, where))
        return out

    def _provider(self, item: Any, where: str) -> _Provider:
        if isinstance(item, Mapping) and len(item) == 1 and not set(item) & _PROVIDER_KEYS:
            ((pid, options),) = item.items()  # {openai:gpt-4o: {config: ...}}
            item = {"id": pid, **(options if isinstance(options, Mapping) else {})}
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
            raise self.error("expected a provider id (openai:gpt-4o-mini) or {id, config}", where)
        config = item.get("config") or {}
        if not isinstance(config, Mapping):
            raise self.error("expected a mapping", f"{where}.config")
        model, why = _litellm_model(item["id"])
        prompts = item.get("prompts") or []
        runs = tuple(str(p) for p in (prompts if isinstance(prompts, list) else [prompts]))
        return _Provider(where, item["id"], model, why, config, str(item.get("label") or item["id"]), runs)

    def params(self, provider: _Provider) -> tuple[dict[str, Any], list[str]]:
        """The legacy provider's config as the app's params, and notes on what was not carried."""
        config, notes = provider.config, []
        params: dict[str, Any] = {}
        for key, value in config.items():
            name = _PARAM_NAMES.get(key)
            if name is not None and name not in params:
                params[name] = value
        generation = config.get("generationConfig")
        if isinstance(generation, Mapping):
            for key, value in generation.items():
                if (name := _PARAM_NAMES.get(key)) is not None:
                    params.setdefault(name, value)
        prefix = provider.id.partition(":")[0]
        if prefix in ("openai", "azure", "azureopenai") and not config.get("omitDefaults") and provider.model:
            from migrator.models import model_info

            accepts = model_info(provider.model).accepts
            added = {k: v for k, v in _OPENAI_DEFAULTS.items() if k not in params and k in accepts}
            if added:
                params.update(added)
                shown = ", ".join(f"{k} {v}" for k, v in added.items())
                notes.append(f"app.params has {shown}: promptfoo's OpenAI provider sends them when its config does not")
        for key in config:
            if key in _PARAM_NAMES or key in _SILENT_CONFIG or key == "generationConfig":
                continue
            if key in _BASE_URL_KEYS:
                notes.append(
                    f"{provider.where} sends to {config[key]!r} ({key}): add `api_base: {config[key]}` under app"
                )
            elif key == "apiKey":
                notes.append(
                    f"{provider.where}.config.apiKey is not copied (a spec never holds a key): set the provider's key variable"
                )
            else:
                notes.append(
                    f"{provider.where}.config.{key} is not carried over (migrator searches the params it knows)"
                )
        if config.get("apiKeyEnvar"):
            notes.append(
                f"{provider.where} reads its key from {config['apiKeyEnvar']}: add `api_key_env: {config['apiKeyEnvar']}` under app"
            )
        return params, notes

    # --- tests

    def tests(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[_Test]]:
        default = config.get("defaultTest") or {}
        if isinstance(default, str):
            paths = self.resolve(default, "defaultTest")
            default = self.structured(paths[0], "defaultTest") or {}
        if not isinstance(default, Mapping):
            raise self.error("expected a mapping (vars, assert, options)", "defaultTest")
        default = dict(default)
        try:
            default["vars"] = {
                k: self._var_file(v, f"defaultTest.vars.{k}")
                for k, v in self._vars(default.get("vars"), "defaultTest.vars").items()
            }
        except _NotCarried as exc:
            raise self.error(f"{exc}: every test reads it", "defaultTest.vars") from None
        raw = config.get("tests")
        if raw is None or raw == []:
            raise self.error("no tests: a golden dataset needs examples", "tests")
        items = raw if isinstance(raw, list) else [raw]
        tests: list[_Test] = []
        for i, item in enumerate(items):
            where = f"tests[{i}]" if isinstance(raw, list) else "tests"
            if isinstance(item, str):
                tests += self._test_file(item, where)
            elif isinstance(item, Mapping):
                tests += self._expanded(item, where)
            else:
                raise self.error(f"expected a test or a file:// path, got {type(item).__name__}", where)
        if not tests:
            raise self.error("no tests: a golden dataset needs examples", "tests")
        return default, tests

    def _test_file(self, ref: str, where: str) -> list[_Test]:
        if re.match(r"^[a-z]+://", ref) and not ref.startswith("file://"):
            self.found.note(f"{where}: tests from {ref!r} are not read (a file of its rows, as CSV or YAML, is)")
            return []
        if re.search(r"\.(py|js|mjs|cjs|ts)(:\w+)?$", ref):
            self.found.note(f"{where}: tests a script generates ({ref}) are not read: write them to a CSV or YAML file")
            return []
        out: list[_Test] = []
        for path in self.resolve(ref, where):
            suffix = path.suffix.lower()
            if suffix == ".csv":
                out += self._csv_tests(path)
            elif suffix in (".yaml", ".yml", ".json"):
                content = self.structured(path, where)
                for j, item in enumerate(content if isinstance(content, list) else [content]):
                    if not isinstance(item, Mapping):
                        raise SourceError("expected a test mapping (vars, assert)", file=str(path), where=f"[{j}]")
                    out += self._expanded(item, f"{path.name}[{j}]")
            elif suffix == ".jsonl":
                for n, line in enumerate(self.read_text(path, where).splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SourceError(f"invalid JSON: {exc.msg}", file=str(path), where=f"line {n}") from None
                    out += self._expanded(item, f"{path.name} line {n}")
            else:
                self.found.note(f"{where}: {path.name} is not read (tests come from CSV, YAML, JSON or JSONL)")
        return out

    def _csv_tests(self, path: Path) -> list[_Test]:
        reader = csv.DictReader(io.StringIO(self.read_text(path, str(path)), newline=""))
        out: list[_Test] = []
        line = 2  # where the row starts (after the header; a quoted cell may span lines)
        try:
            for row in reader:
                if None in row:
                    raise SourceError("more cells than header columns", file=str(path), where=f"line {line}")
                try:
                    test = _csv_test({str(k).strip(): v or "" for k, v in row.items()})
                except ValueError as exc:
                    raise SourceError(str(exc), file=str(path), where=f"line {line}") from None
                out += self._expanded(test, f"{path.name} line {line}", expand=False)
                line = reader.line_num + 1
        except csv.Error as exc:
            raise SourceError(f"unreadable CSV: {exc}", file=str(path), where=f"line {reader.line_num}") from None
        return out

    def _vars(self, raw: Any, where: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if isinstance(raw, str) and raw.startswith("file://"):
            merged: dict[str, Any] = {}
            for path in self.resolve(raw, where):
                content = self.structured(path, where)
                if not isinstance(content, Mapping):
                    raise SourceError("expected a mapping of vars", file=str(path))
                merged.update(content)
            return merged
        if not isinstance(raw, Mapping):
            raise self.error("expected a mapping of vars", where)
        return dict(raw)

    def _expanded(self, item: Mapping[str, Any], where: str, *, expand: bool = True) -> list[_Test]:
        """One test, or one per combination of its array vars (as promptfoo runs them)."""
        own = self._vars(item.get("vars"), f"{where}.vars")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise self.error("expected a mapping", f"{where}.options")
        asserts = item.get("assert") or []
        if not isinstance(asserts, list):
            raise self.error("expected a list of assertions", f"{where}.assert")
        description = str(item.get("description") or "")
        try:
            base = {k: self._var_file(v, f"{where}.vars.{k}") for k, v in own.items()}
        except _NotCarried as exc:
            return [_Test(where, description, {}, (), options, why_not=str(exc))]
        arrays = (
            [k for k, v in base.items() if isinstance(v, list)]
            if expand and not options.get("disableVarExpansion")
            else []
        )
        combos = list(itertools.product(*(base[k] for k in arrays))) if arrays else [()]
        out = []
        for n, combo in enumerate(combos, 1):
            values = {**base, **dict(zip(arrays, combo, strict=True))}
            shown = where if len(combos) == 1 else f"{where} #{n}"
            out.append(_Test(shown, description, values, tuple(asserts), options, item.get("threshold")))
            for key in ("provider", "providerOutput", "prompts", "providers"):
                if item.get(key):
                    self.found.note(
                        f"{shown}: `{key}` is not carried over (migrator sends every test to each model it searches)"
                    )
        return out

    def _var_file(self, value: Any, where: str) -> Any:
        """A var's value; a ``file://`` text file's content, a YAML or JSON file's data (a glob: a list of them)."""
        if isinstance(value, list):
            return [self._var_file(v, where) for v in value]
        if not (isinstance(value, str) and value.startswith("file://")):
            return value
        if re.search(r"\.(py|js|mjs|cjs|ts|pdf|png|jpe?g|gif|webp|mp3|wav|mp4)(:\w+)?$", value, re.IGNORECASE):
            raise _NotCarried(f"a var from {value} (a script, image, audio or PDF)")
        loaded = [
            self.structured(p, where) if p.suffix.lower() in (".yaml", ".yml", ".json") else self.read_text(p, where)
            for p in self.resolve(value, where)
        ]
        return loaded if glob.has_magic(value) else loaded[0]


class _NotCarried(Exception):
    """A test needs something migrator cannot carry (a scripted var)."""


def _text_prompt(text: str, where: str, label: str) -> _Prompt:
    """An inline prompt: chat messages when its text is a JSON list of them (promptfoo sends it so), else one user turn."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            content = json.loads(stripped)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(content, list) or (isinstance(content, dict) and "role" in content):
                return _chat_prompt(content, where, label)
    return _Prompt(where, label, (("user", text),))


def _chat_prompt(content: Any, where: str, label: str) -> _Prompt:
    messages = [content] if isinstance(content, Mapping) else content
    if not isinstance(messages, list) or not messages:
        return _Prompt(where, label, None, "not a list of {role, content} messages")
    out = []
    for i, m in enumerate(messages):
        text = _message_text(m.get("content")) if isinstance(m, Mapping) else None
        role = _ROLES.get(str(m.get("role"))) if isinstance(m, Mapping) else None
        if role is None or text is None:
            return _Prompt(where, label, None, f"message {i} is not {{role: system|user|assistant, content: text}}")
        out.append((role, text))
    return _Prompt(where, label, tuple(out))


def _message_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    return None  # images, audio, tool calls


# --- CSV rows as promptfoo reads them ----------------------------------------------------

_ASSERTION_TYPES = (
    "agent-rubric", "answer-relevance", "bleu", "classifier", "contains", "contains-all", "contains-any",
    "contains-html", "contains-json", "contains-sql", "contains-xml", "context-faithfulness", "context-recall",
    "context-relevance", "conversation-relevance", "cost", "equals", "factuality", "finish-reason", "g-eval",
    "gleu", "guardrails", "human", "icontains", "icontains-all", "icontains-any", "is-html", "is-json",
    "is-refusal", "is-sql", "is-valid-function-call", "is-valid-openai-function-call",
    "is-valid-openai-tools-call", "is-xml", "javascript", "latency", "levenshtein", "llm-rubric", "meteor",
    "model-graded-closedqa", "model-graded-factuality", "moderation", "perplexity", "perplexity-score", "pi",
    "python", "regex", "rouge-n", "ruby", "search-rubric", "select-best", "similar", "similar:cosine",
    "similar:dot", "similar:euclidean", "skill-used", "starts-with", "tool-call-f1", "trace-error-spans",
    "trace-span-count", "trace-span-duration", "trajectory:goal-success", "trajectory:step-count",
    "trajectory:tool-args-match", "trajectory:tool-sequence", "trajectory:tool-used", "webhook", "word-count",
)  # fmt: skip
# promptfoo's own list, longest first so `contains-any` is not read as `contains`
_ASSERTION = re.compile(
    r"^(not-)?(" + "|".join(re.escape(t) for t in sorted(_ASSERTION_TYPES, key=len, reverse=True)) + r")"
    r"(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$"
)
_LIST_TYPES = frozenset({"contains-all", "contains-any", "icontains-all", "icontains-any"})
_THRESHOLD_TYPES = {"answer-relevance": 0.75, "classifier": 0.75, "context-faithfulness": 0.75, "context-recall": 0.75,
                    "context-relevance": 0.75, "cost": 0.75, "latency": 0.75, "levenshtein": 0.75,
                    "perplexity-score": 0.75, "perplexity": 0.75, "rouge-n": 0.75, "similar": 0.8,
                    "starts-with": 0.75}  # fmt: skip


def _from_string(text: str) -> dict[str, Any]:
    """An ``__expected`` cell as promptfoo reads it: ``type:value``, ``type(threshold):value``, or a bare value (equals)."""
    for prefix, kind in (("javascript:", "javascript"), ("fn:", "javascript"), ("eval:", "javascript"),
                         ("grade:", "llm-rubric"), ("llm-rubric:", "llm-rubric"), ("python:", "python")):  # fmt: skip
        if text.startswith(prefix):
            value = text[len(prefix) :]
            return {"type": kind, "value": value if kind == "llm-rubric" else value.strip()}
    if text.startswith("file://") and re.search(r"\.(js|mjs|cjs|ts)(:\w+)?$", text):
        return {"type": "javascript", "value": text}
    if text.startswith("file://") and (text.endswith(".py") or ".py:" in text):
        return {"type": "python", "value": text}
    match = _ASSERTION.match(text)
    if match is None:
        return {"type": "equals", "value": text}
    negated, kind, threshold, value = match.groups()
    out: dict[str, Any] = {"type": f"not-{kind}" if negated else kind}
    if kind in _LIST_TYPES:
        if value is not None:  # comma-separated; a "quoted" value may hold commas
            out["value"] = [
                q if q else u.strip() for q, u in re.findall(r'\s*"([^"]*)"\s*|([^,]+)', value) if q or u.strip()
            ]
    elif kind in ("contains-json", "is-json"):
        if value is not None:
            out["value"] = value
    else:
        if value is not None:
            out["value"] = value.strip()
        if kind in _THRESHOLD_TYPES:
            out["threshold"] = float(threshold) if threshold else _THRESHOLD_TYPES[kind]
    return out


def _csv_test(row: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row as promptfoo's test: columns are vars but the ``__`` ones it reserves."""
    vars_: dict[str, str] = {}
    asserts: list[dict[str, Any]] = []
    options: dict[str, Any] = {}
    configs: dict[int, dict[str, Any]] = {}
    test: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("__expected"):
            if value.strip():
                asserts.append(_from_string(value.strip()))
        elif key in ("__prefix", "__suffix"):
            options[key[2:]] = value
        elif key == "__description":
            test["description"] = value
        elif key == "__threshold":
            test["threshold"] = value
        elif key.startswith("__config:"):
            match = re.fullmatch(r"__config:__expected(\d*):threshold", key)
            if match is None:
                raise ValueError(f"column {key!r}: promptfoo reads __config:__expected[N]:threshold")
            if value.strip():
                index = int(match.group(1) or 1) - 1
                configs.setdefault(index, {})["threshold"] = float(value)
        elif key in ("__metric", "__providerOutput", "__metadata") or key.startswith("__metadata:"):
            continue  # display names and filters; a canned reply is not the model's
        else:
            vars_[key] = value
    for index, settings in configs.items():
        if index < len(asserts):
            asserts[index].update(settings)
    return {**test, "vars": vars_, "assert": asserts, "options": options}


# --- templates ---------------------------------------------------------------------------


def _jinja2_messages(prompt: _Prompt, file: str) -> tuple[tuple[tuple[str, str], ...], frozenset[str], list[str]]:
    """The prompt's messages as Jinja2 reads them, the vars ``| load`` parses, and notes on filters that differ.

    ``(var | load)`` (promptfoo's JSON.parse) becomes ``var``, and the importer parses that var's
    JSON once; a filter Jinja2 lacks is refused, naming the message.
    """
    assert prompt.messages is not None
    loaded: set[str] = set()
    notes: list[str] = []
    wheres = [
        f"{prompt.where} message {i}" if len(prompt.messages) > 1 else prompt.where for i in range(len(prompt.messages))
    ]
    for (_, text), where in zip(prompt.messages, wheres, strict=True):
        tree = _parse(text, file, where)
        if "_messages" in {n.name for n in tree.find_all(nodes.Name)} and "dump" in _filters(tree):
            raise SourceError(
                "each test carries its own prompt (`{{ _messages | dump }}`, an export of a winner with demos picked "
                "per input): there is no one template to import", file=file, where=where)  # fmt: skip
        for f in tree.find_all(nodes.Filter):
            if f.name == "load" and isinstance(f.node, nodes.Name):
                loaded.add(f.node.name)
            elif f.name == "load":
                raise SourceError(
                    "uses `| load` on an expression: only `(var | load)` is translated", file=file, where=where
                )
            elif f.name in _NUNJUCKS_ONLY:
                raise SourceError(
                    f"uses the Nunjucks filter `{f.name}`: {_NUNJUCKS_ONLY[f.name]}; rewrite it", file=file, where=where
                )
            elif f.name not in jinja2.filters.FILTERS:
                raise SourceError(
                    f"uses the filter `{f.name}`, which Jinja2 lacks (a nunjucksFilters entry?)", file=file, where=where
                )
            elif f.name in _DIFFERS:
                notes.append(f"{where} uses `{f.name}`: {_DIFFERS[f.name]}")
    out = []
    for (role, text), where in zip(prompt.messages, wheres, strict=True):
        for var in sorted(loaded):
            text = re.sub(rf"\(\s*{re.escape(var)}\s*\|\s*load\s*\)|\b{re.escape(var)}\s*\|\s*load\b", var, text)
        if "load" in _filters(_parse(text, file, where)):
            raise SourceError("uses `| load` in a form that is not `(var | load)`", file=file, where=where)
        mixed = sorted(loaded & _raw_uses([(role, text)]))
        if mixed:
            raise SourceError(f"uses {{{{ {mixed[0]} }}}} both as text and through `| load`", file=file, where=where)
        out.append((role, text))
    return tuple(out), frozenset(loaded), notes


def _parse(text: str, file: str, where: str) -> nodes.Template:
    try:
        return _PARSER.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise SourceError(
            f"Nunjucks that Jinja2 cannot read: {exc.message} (template line {exc.lineno})", file=file, where=where
        ) from None


def _filters(tree: nodes.Template) -> set[str]:
    return {f.name for f in tree.find_all(nodes.Filter)}


def _rendered(value: Any, vars_: Mapping[str, Any], found: _Tests, where: str) -> Any:
    """A var or an assertion value rendered with the test's vars, as promptfoo renders them (undefined is empty)."""
    if isinstance(value, list):
        return [_rendered(v, vars_, found, where) for v in value]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    if re.search(r"\{[{%][^}]*\benv\b", value):
        found.note(f"{where} reads `{{{{ env... }}}}`: left as written (migrator puts no environment into the data)")
        return value
    try:
        return _LENIENT.from_string(value).render(**vars_)
    except Exception:  # Nunjucks migrator's Jinja2 cannot render: kept as written, and said
        found.note(f"{where}: a template in a value could not be rendered; it is kept as written")
        return value


# --- assertions --------------------------------------------------------------------------

# the metric assertion `migrator export --format promptfoo` writes reads this var
_EXPORTED = re.compile(r"context\.vars\._expected|context\[\"vars\"\]\[\"_expected\"\]")


def _translated(
    raw: Any, test: _Test, vars_: Mapping[str, Any], reader: _Reader, config: Mapping[str, Any]
) -> dict[str, Any] | str:
    """An assertion as the ``assertions`` metric reads it, or why it cannot be."""
    if isinstance(raw, Mapping) and isinstance(raw.get("$ref"), str):
        raw = _pointer(config, raw["$ref"])
        if raw is None:
            return "`$ref` to nothing"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        return "not an assertion ({type, value})"
    kind = raw["type"]
    if kind == "assert-set":
        inner = [_translated(a, test, vars_, reader, config) for a in raw.get("assert") or []]
        bad = [r for r in inner if isinstance(r, str)]
        if bad or not inner:
            return f"an assert-set holding one that is {bad[0] if bad else 'missing'}"
        return {"type": kind, "assert": inner, **{k: raw[k] for k in ("weight", "threshold") if k in raw}}
    if (
        isinstance(raw.get("value"), str)
        and _EXPORTED.search(raw["value"])
        and isinstance(vars_.get("_expected"), Mapping)
    ):
        return {"type": "equals", "value": vars_["_expected"].get("value")}
    out: dict[str, Any] = {"type": kind}
    if "value" in raw:
        value = _rendered(raw["value"], vars_, reader.found, test.where)
        if (
            isinstance(value, str)
            and value.startswith("file://")
            and kind.removeprefix("not-") not in ("javascript", "python")
        ):
            paths = reader.resolve(value, f"{test.where} assertion {kind}")
            value = (
                reader.structured(paths[0], test.where)
                if paths[0].suffix.lower() in (".json", ".yaml", ".yml")
                else reader.read_text(paths[0], test.where)
            )
        out["value"] = value
    for key in ("weight", "threshold", "transform", "contextTransform"):
        if key in raw:
            out[key] = raw[key]
    if kind.removeprefix("not-") in ("javascript", "python") and "context" in str(out.get("value", "")):
        out["vars"] = {k: v for k, v in vars_.items() if not k.startswith("_")}
        if isinstance(raw.get("config"), Mapping):
            out["config"] = dict(raw["config"])
    if (
        not isinstance(out.get("weight", 1), (int, float))
        or isinstance(out.get("weight"), bool)
        or float(out.get("weight", 1)) < 0
    ):
        return "has a weight that is not a number >= 0"
    return assertions.unsupported(out) or out


def _similar_checks(checks: Sequence[Mapping[str, Any]]) -> int:
    """How many of the checks (those in assert-sets too) are `similar`, which migrator scores with its own embeddings."""
    return sum(
        _similar_checks(c["assert"])
        if c["type"] == "assert-set"
        else c["type"].removeprefix("not-").startswith("similar")
        for c in checks
    )


def _pointer(config: Mapping[str, Any], ref: str) -> Any:
    """A ``#/assertionTemplates/name`` reference's target in the config."""
    if not ref.startswith("#/"):
        return None
    node: Any = config
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    return node


# --- the draft ---------------------------------------------------------------------------


def _config_file(path: Path) -> Path:
    if path.is_dir():
        for name in _CONFIG_NAMES:
            if (path / name).is_file():
                return path / name
        raise SourceError(f"no {' or '.join(_CONFIG_NAMES)} in this folder", file=str(path))
    if not path.is_file():
        raise SourceError("file not found", file=str(path))
    if path.suffix.lower() in (".js", ".cjs", ".mjs", ".ts"):
        raise SourceError("a JavaScript config is not read: write it as promptfooconfig.yaml", file=str(path))
    return path


def _app_prompt(prompts: Sequence[_Prompt], legacy: _Provider, file: str) -> tuple[_Prompt, list[_Prompt]]:
    """The legacy provider's prompt (the first, or the first of those it names) and the others."""
    mine = [
        p
        for p in prompts
        if not legacy.prompts or p.label in legacy.prompts or any(p.label.startswith(f"{x}:") for x in legacy.prompts)
    ]
    if not mine:
        raise SourceError(
            f"{legacy.where} runs prompts {', '.join(legacy.prompts)}, which no prompt is labelled",
            file=file,
            where="prompts",
        )
    app = mine[0]
    if app.messages is None:
        raise SourceError(f"the app's prompt is {app.why_not}: migrator needs its text", file=file, where=app.where)
    return app, [p for p in prompts if p is not app]


def _free(name: str, taken: Sequence[str]) -> str:
    while name in taken:
        name = f"{name}_"
    return name


def _as_input(value: Any, raw_use: bool) -> Any:
    """A var's value as migrator passes it to the template: promptfoo's text of scalars, JSON text of objects used as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (dict, list)) and raw_use:
        return json.dumps(value, ensure_ascii=False)
    return value


def from_promptfoo(path: Path, *, name: str, targets: Sequence[str] = ()) -> Draft:
    """The app a promptfoo config tests: its first prompt on its first provider, its tests as the golden rows.

    Args:
        path: promptfooconfig.yaml (or .json), or the folder holding it.
        targets: the models the user listed; the config's other providers come first.
    """
    config_path = _config_file(path)
    reader = _Reader(config_path)
    file = reader.file
    config = reader.structured(config_path, "")
    if not isinstance(config, Mapping):
        raise SourceError(f"expected a mapping at the top level, got {type(config).__name__}", file=file)
    notes: list[str] = []
    if isinstance(config.get("description"), str) and config["description"].startswith("migrator winner for "):
        notes.append(
            "this config is a `migrator export --format promptfoo`: its `_expected` values are the expected outputs"
        )
    prompts = reader.prompts(config.get("prompts"))
    providers = reader.providers(config)
    legacy = providers[0]
    if legacy.model is None:
        raise SourceError(
            f"{legacy.id!r} is {legacy.why_not}: the first provider is the app's legacy model",
            file=file,
            where=legacy.where,
        )
    params, provider_notes = reader.params(legacy)
    app, others = _app_prompt(prompts, legacy, file)
    messages, loaded, filter_notes = _jinja2_messages(app, file)
    notes += filter_notes
    if others:
        shown = _listed([f"{p.where} {p.label!r}" if p.messages else f"{p.where} ({p.why_not})" for p in others])
        notes.append(f"the app's prompt is {app.where}; {len(others)} other prompt(s) are not imported: {shown}")
    candidates = _candidates(providers[1:], legacy, targets, notes)
    notes += provider_notes
    default, tests = reader.tests(config)
    for key in sorted(set(config) - _IGNORED_KEYS - {"prompts", "providers", "targets", "defaultTest", "tests"}):
        notes.append(f"`{key}` is not read (migrator reads prompts, providers, defaultTest and tests)")
    messages = _with_affixes(messages, default.get("options") or {}, app, notes)
    template = PromptTemplate(messages, source=file)
    variables = sorted(template.variables)
    check_names(variables, app.where, file)
    raw_uses = _raw_uses(messages)
    rubric = _shared_rubric(default, tests)
    rows, kinds = _rows(reader, config, default, tests, variables, loaded, raw_uses, rubric)
    found = reader.found
    notes += found.notes
    similar = sum(_similar_checks(kept) for _, _, kept in rows)
    if similar:
        notes.append(
            f"`similar` ({similar} assertion(s)) is scored with migrator's own embedding model (all-MiniLM-L6-v2, "
            "the `similarity` extra), not OpenAI's text-embedding-3-large that promptfoo uses by default, so these "
            "scores are not promptfoo's: with this model a paraphrase scores about 0.6, unrelated text about 0.1"
        )
    for what, places in found.untranslated.items():
        notes.append(f"not translated: {what}: {len(places)} assertion(s), in {_listed(places)}")
    for why, places in found.left_out.items():
        notes.append(f"{len(places)} of {len(tests)} tests left out: {why} ({_listed(places)})")
    if not rows:
        raise SourceError(
            f"no test left to score ({'; '.join(n for n in notes if 'left out' in n)})", file=file, where="tests"
        )
    expected_field = _free("expected", variables)
    id_field = _free("id", variables)
    if rubric is not None:
        metric, values = _judge_metric(reader, default, legacy, rubric, notes), [rubric] * len(rows)
    else:
        metric, values = _expected([kept for _, _, kept in rows], kinds)
        if metric["name"] == "assertions" and any(assertions.rubrics(kept) for _, _, kept in rows):
            model, why = _grader(reader, default, legacy, notes)
            notes.append(_RUBRIC_NOTE)
            metric = {**metric, "model": model, "_why": f"{metric['_why']}; llm-rubric graded by {why}"}
    width = max(4, len(str(len(tests))))
    return Draft(
        name=name,
        source=f"promptfoo config {config_path.name} ({len(rows)} of {len(tests)} tests)",
        messages=messages,
        rows=tuple(
            {id_field: f"test-{n:0{width}d}", **inputs, expected_field: value}
            for (n, inputs, _), value in zip(rows, values, strict=True)
        ),
        input_fields=tuple(variables),
        metric=metric,
        model=legacy.model,
        params=params,
        targets=candidates,
        expected_field=expected_field,
        id_field=id_field,
        notes=tuple(notes),
    )


def _candidates(
    providers: Sequence[_Provider], legacy: _Provider, targets: Sequence[str], notes: list[str]
) -> tuple[str, ...]:
    """The other providers' models, then the user's ``--target``s, each once and none the legacy model."""
    picked: list[str] = []
    for p in providers:
        if p.model is None:
            notes.append(f"{p.where} {p.id!r} is not a candidate: {p.why_not}")
        elif any(k in p.config for k in _BASE_URL_KEYS):
            base = next(p.config[k] for k in _BASE_URL_KEYS if k in p.config)
            notes.append(
                f"{p.where} {p.id!r} is served at {base!r}: add {{model: {p.model}, api_base: {base}}} to catalog"
            )
        else:
            picked.append(p.model)
    if any(p.config for p in providers if p.model):
        notes.append("the other providers' config is not carried over: the search tries the params each model accepts")
    return tuple(dict.fromkeys(m for m in (*picked, *targets) if m != legacy.model))


def _with_affixes(
    messages: tuple[tuple[str, str], ...], options: Mapping[str, Any], app: _Prompt, notes: list[str]
) -> tuple[tuple[str, str], ...]:
    """defaultTest's ``options.prefix`` and ``suffix`` put around a text prompt, as promptfoo does."""
    prefix, suffix = str(options.get("prefix") or ""), str(options.get("suffix") or "")
    if not prefix and not suffix:
        return messages
    if len(messages) != 1:
        notes.append(f"defaultTest.options prefix/suffix are not put into the chat prompt {app.where}")
        return messages
    return ((messages[0][0], prefix + messages[0][1] + suffix),)


def _raw_uses(messages: Sequence[tuple[str, str]]) -> frozenset[str]:
    """The vars a template prints as they are (``{{ var }}``), not through an attribute or a filter."""
    used: set[str] = set()
    for _, text in messages:
        for output in _PARSER.parse(text).find_all(nodes.Output):
            used |= {n.name for n in output.nodes if isinstance(n, nodes.Name)}
    return frozenset(used)


def _rows(
    reader: _Reader,
    config: Mapping[str, Any],
    default: Mapping[str, Any],
    tests: Sequence[_Test],
    variables: Sequence[str],
    loaded: frozenset[str],
    raw_uses: frozenset[str],
    rubric: str | None = None,
) -> tuple[list[tuple[int, dict[str, Any], list[dict[str, Any]]]], Counter[str]]:
    """(test number, inputs, assertions kept) per test scored, and how many of each assertion type were kept.

    ``rubric``: the one ``llm-rubric`` every test is scored by, which the judge metric scores.
    """
    found = reader.found
    rows: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
    kinds: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    thresholds = 0
    for number, test in enumerate(tests, 1):
        where = test.shown
        if test.why_not:
            found.leave_out(test.why_not, where)
            continue
        vars_ = {**default.get("vars", {}), **test.vars}
        vars_ = {k: _rendered(v, {**vars_, k: ""}, found, where) for k, v in vars_.items()}
        if test.options.get("prefix") or test.options.get("suffix"):
            found.note(f"{where}: its own options.prefix/suffix are not put into the prompt (defaultTest's are)")
        own = list(test.asserts)
        given = [] if test.options.get("disableDefaultAsserts") else list(default.get("assert") or [])
        transform = test.options.get("transform") or default.get("options", {}).get("transform")
        if transform:
            found.leave_out("the test transforms the reply before its assertions (options.transform)", where)
            continue
        if not own and not given:
            found.leave_out("no assertion (promptfoo passes it whatever the reply)", where)
            continue
        kept: list[dict[str, Any]] = [{"type": "llm-rubric", "value": rubric}] if rubric is not None else []
        for raw in [] if rubric is not None else [*given, *own]:
            result = _translated(raw, test, vars_, reader, config)
            if isinstance(result, str):
                kind = raw.get("type", "?") if isinstance(raw, Mapping) else "?"
                found.skip(f"`{kind}` ({result})", where)
            else:
                kept.append(result)
        if not kept:
            found.leave_out("none of its assertions is one migrator scores", where)
            continue
        inputs: dict[str, Any] = {}
        for var in variables:
            if var not in vars_:
                missing[var] += 1
            value = vars_.get(var, "")
            if var in loaded and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    found.leave_out(f"`{var}` is not JSON, which `| load` reads", where)
                    break
            inputs[var] = _as_input(value, var in raw_uses)
        else:
            thresholds += test.threshold is not None or default.get("threshold") is not None
            kinds.update(a["type"] for a in kept)
            rows.append((number, inputs, kept))
    for var, count in missing.items():
        found.note(f"{count} test(s) have no var `{var}`: it is empty there, as promptfoo renders it")
    if thresholds:
        found.note(
            f"{thresholds} test(s) set a threshold: migrator scores the weighted mean of the assertions, which promptfoo compares with it"
        )
    return rows, kinds


def _shared_rubric(default: Mapping[str, Any], tests: Sequence[_Test]) -> str | None:
    """The rubric of a suite whose every test is scored by one and the same ``llm-rubric`` and nothing else.

    Such a suite becomes the ``judge`` metric with the rubric as its criteria; a suite that mixes
    rubrics with other assertions, or gives each test its own, keeps the ``assertions`` metric.
    """
    rubrics: set[str] = set()
    for test in tests:
        if test.why_not:
            continue
        given = [] if test.options.get("disableDefaultAsserts") else list(default.get("assert") or [])
        checks = [*given, *test.asserts]
        if len(checks) != 1 or not isinstance(checks[0], Mapping) or checks[0].get("type") != "llm-rubric":
            return None
        value = checks[0].get("value")
        if not isinstance(value, str) or not value.strip() or "{{" in value or value.startswith("file://"):
            return None
        rubrics.add(value.strip())
    return rubrics.pop() if len(rubrics) == 1 else None


def _grader(reader: _Reader, default: Mapping[str, Any], legacy: _Provider, notes: list[str]) -> tuple[str, str]:
    """The model that judges llm-rubric, and why: promptfoo's grading provider, else the legacy model (flagged)."""
    provider = (default.get("options") or {}).get("provider")
    grader = reader._provider(provider, "defaultTest.options.provider") if provider else None
    model: str | None = grader.model if grader is not None else None
    if grader is not None and model is not None:
        base = next((grader.config[k] for k in _BASE_URL_KEYS if k in grader.config), None)
        if base:
            notes.append(f"promptfoo's grader is served at {base!r}: set metric.model to {{model: {model}, api_base: {base}}}")
        return model, f"promptfoo's grading provider {grader.id!r}"
    why = (
        f"promptfoo's grader {grader.id!r} is {grader.why_not}" if grader is not None
        else "no defaultTest.options.provider names promptfoo's grader (promptfoo would use its default one)"
    )
    notes.append(
        f"the judge is the legacy model {legacy.model}: {why}; set metric.model to a model you trust to judge, "
        "one that outlives the migration"
    )
    return str(legacy.model), f"the legacy model ({why})"


_RUBRIC_NOTE = (
    "`llm-rubric` is graded by migrator's judge (metric.model): the rubric is its criteria and it sees no "
    "reference reply, as in promptfoo; its prompt is DSPy's, not promptfoo's, so its grades are not promptfoo's"
)


def _judge_metric(
    reader: _Reader, default: Mapping[str, Any], legacy: _Provider, rubric: str, notes: list[str]
) -> dict[str, Any]:
    """The judge metric for a suite scored by one rubric alone."""
    model, why = _grader(reader, default, legacy, notes)
    notes.append(_RUBRIC_NOTE)
    return {
        "name": "judge",
        "model": model,
        "criteria": rubric,
        "reference": False,
        "_why": f"every test is scored by one llm-rubric: an LLM judge ({why}) with the rubric as its criteria",
    }


def _expected(checks: Sequence[list[dict[str, Any]]], kinds: Counter[str]) -> tuple[dict[str, Any], list[Any]]:
    """The metric and each row's expected value.

    One ``equals`` per test: its value is the expected output, and the metric is guessed from
    them as for every importer. Otherwise each row's expected value is its test's assertions.
    """
    if all(len(c) == 1 and c[0]["type"] == "equals" and not isinstance(c[0].get("value"), list) for c in checks):
        values = [c[0].get("value") for c in checks]
        values = [("true" if v else "false") if isinstance(v, bool) else v for v in values]
        metric, why = guess_metric(values)
        if not any(isinstance(v, dict) for v in values):
            why += "; promptfoo's equals compared byte for byte"
        return {**metric, "_why": why}, values
    shown = ", ".join(f"{k} x{n}" for k, n in kinds.most_common())
    return {
        "name": "assertions",
        "_why": f"promptfoo's own assertions ({shown}), scored as promptfoo scores a test",
    }, list(checks)
