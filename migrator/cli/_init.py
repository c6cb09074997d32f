"""``migrator init``: a migration.yaml (and its prompt and dataset files) from what the app already has.

The draft is written to a scratch folder first and checked there as ``migrator run`` would read it
(spec, prompt, dataset, metric, ``targets: auto``): only a draft that passes is written to ``--out``,
each file atomically and the spec last, so a failed init leaves nothing behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

from migrator.cli._terminal import log
from migrator.errors import InputError, SourceError, SpecError
from migrator.importers import SPEC_FILE, Draft, advice, from_chat_log, from_plain, render, slug

__all__ = ["KINDS", "cmd_init"]

KINDS = ("chat-log", "mlflow", "plain", "promptfoo")


def cmd_init(args: argparse.Namespace) -> int:
    out: Path = args.out
    spec_path = out / SPEC_FILE
    if spec_path.exists() and not args.force:
        raise SpecError("already exists; pass --force to replace it", file=str(spec_path))
    draft = _draft(args)
    files = render(draft)
    _check(draft, out)
    from migrator.outputs import write_atomic

    for name in sorted(files, key=lambda n: n == SPEC_FILE):  # the spec last: it never names a file not yet there
        write_atomic(out / name, files[name])
    print(f"wrote {', '.join(str(out / n) for n in files)} ({len(draft.rows)} rows, metric {draft.metric['name']})")
    for note in advice(draft):
        log.warning("check: %s", note)
    print(f"next: migrator run {spec_path} --dry-run   (the plan and its cost, no call made)")
    print(f"      migrator run {spec_path} --out runs/{draft.name}")
    return 0


def _draft(args: argparse.Namespace) -> Draft:
    targets = tuple(args.target or ())
    name = args.name or slug(Path(args.out).resolve().name)
    kind, source = args.source if args.source else ("plain", None)
    if kind == "chat-log":
        if args.prompt or args.data:
            raise SourceError("--from chat-log takes the prompt and the data from the log: drop --prompt and --data")
        return from_chat_log(Path(str(source)), model=args.model, targets=targets, name=name)
    if kind == "mlflow":
        return _from_mlflow(args, str(source), targets, name)
    if kind == "promptfoo":
        flags = (("--prompt", args.prompt), ("--data", args.data), ("--model", args.model), ("--expected", args.expected))
        given = [flag for flag, value in flags if value]
        if given:
            raise SourceError(f"--from promptfoo takes the prompt, tests and models from the config: drop {', '.join(given)}")
        from migrator.importers import from_promptfoo

        return from_promptfoo(Path(str(source)), name=name, targets=targets)
    if kind == "plain":
        missing = [flag for flag, value in (("--prompt", args.prompt), ("--data", args.data), ("--model", args.model)) if not value]
        if missing:
            raise SourceError(f"the plain way in needs --prompt FILE --data FILE --model LEGACY; missing {', '.join(missing)}")
        return from_plain(
            args.prompt, args.data, out=args.out, model=args.model, expected=args.expected, targets=targets, name=name
        )
    raise SourceError(f"unknown source kind {kind!r}, expected one of {', '.join(KINDS)}", where="--from")


def _from_mlflow(args: argparse.Namespace, uri: str, targets: tuple[str, ...], name: str) -> Draft:
    from migrator.importers import from_mlflow

    if not args.data:
        raise SourceError("--from mlflow takes the prompt from the registry and the rows from --data FILE: add --data")
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise SourceError("which MLflow? pass --tracking-uri (or set MLFLOW_TRACKING_URI)", where="--from mlflow")
    return from_mlflow(
        uri, args.data, tracking_uri=tracking_uri, out=args.out, name=name, model=args.model,
        expected=args.expected, targets=targets,
    )


def _check(draft: Draft, out: Path) -> None:
    """The draft read back as ``migrator run`` reads it, from a scratch folder; errors name ``out``'s files."""
    from migrator.dataset import load_examples
    from migrator.metrics import build_metric
    from migrator.migration import load_template
    from migrator.spec import load_spec

    absolute = dataclasses.replace(
        draft,
        data_file=str((out / draft.data_file).resolve()) if draft.data_file else None,
        prompt_file=str((out / draft.prompt_file).resolve()) if draft.prompt_file else None,
    )
    with tempfile.TemporaryDirectory(prefix="migrator-init-") as scratch:
        for name, text in render(absolute).items():
            (Path(scratch) / name).write_text(text, encoding="utf-8")
        try:
            spec = load_spec(Path(scratch) / SPEC_FILE, unreachable="keep")
            template = load_template(spec)
            examples = load_examples(spec.resolve(spec.dataset.path), spec.dataset, spec_file=spec.source_file)
            template.check(spec.dataset.input_fields or tuple(examples[0].inputs), examples[0].inputs)
            build_metric(spec.metric, file=spec.source_file)
        except InputError as exc:
            raise type(exc)(str(exc).replace(scratch, str(out.resolve()))) from None
