"""Run a package function from a Snakemake `script:`, with its log captured and bad input shown as one line.

The one convention between a rule and its function: the rule's named input, params and output are
the function's keyword arguments, by the same names. A file arrives as a path (str), a list of files
as a list, and an optional input that is absent (an empty list) as None. The script may add
arguments that change no result, such as the job's threads and the checkpoint interval.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback

from scalinglab.core.errors import UserError


def rule_arguments(snakemake) -> dict:
    """The named input, params and output of the running job, as keyword arguments."""
    arguments = {}
    for kind in ("input", "params", "output"):
        items = getattr(snakemake, kind)
        named = dict(items.items())
        if kind != "params":
            covered = sum(1 if isinstance(value, str) else len(value) for value in named.values())
            if covered != len(items):
                raise ValueError(f"rule {snakemake.rule}: name every {kind} item (the function takes them by name)")
            named = {key: _files(value) for key, value in named.items()}
        clash = sorted(set(named) & set(arguments))
        if clash:
            raise ValueError(f"rule {snakemake.rule}: {', '.join(clash)} named twice (input, params and output)")
        arguments.update(named)
    return arguments


def _files(value):
    if isinstance(value, str):
        return str(value)
    return [str(v) for v in value] or None


def _wildcards(snakemake) -> str:
    try:
        items = dict(snakemake.wildcards.items())
    except (AttributeError, TypeError):
        items = {}
    return ", ".join(f"{k}={v}" for k, v in items.items()) or "no wildcards"


def checkpoint_settings(snakemake) -> dict:
    """The training job's checkpoint arguments: its `checkpoint` param as the file and
    engine.checkpoint_minutes as the interval (0: no checkpoints). The interval is read from the
    config, not a rule param: how often to save changes no result, so it must not rerun jobs."""
    minutes = snakemake.config["engine"]["checkpoint_minutes"]
    return {"checkpoint": snakemake.params.checkpoint if minutes > 0 else None, "checkpoint_every_s": 60 * minutes}


def run(snakemake, function, **extra):
    """Call function(**rule_arguments(snakemake), **extra) with stdout/stderr sent to the rule's log.

    `extra` adds arguments or replaces params (checkpoint_settings replaces `checkpoint`).
    A UserError ends the job with its one-line message on stderr (and in the log), no traceback.
    """
    kwargs = {**rule_arguments(snakemake), **extra}
    log_path = snakemake.log[0] if len(snakemake.log) else None
    log = open(log_path, "w", buffering=1) if log_path else None
    try:
        with contextlib.ExitStack() as stack:
            if log:
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            started = time.perf_counter()
            # every job's log says what ran and that it ended, however little the work printed
            print(f"{snakemake.rule}: started ({_wildcards(snakemake)})", file=sys.stderr, flush=True)
            try:
                result = function(**kwargs)
                print(f"{snakemake.rule}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
                return result
            except UserError as exc:
                print(f"error: {exc}", file=sys.__stderr__)
                print(f"error: {exc}", file=sys.stderr)
                sys.exit(1)
            except Exception:
                traceback.print_exc()
                raise
    finally:
        if log:
            log.close()
