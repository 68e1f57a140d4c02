"""Run a package function from a Snakemake `script:` with its log captured and bad input shown as one line."""

from __future__ import annotations

import contextlib
import sys
import traceback

from scalinglab.core.errors import UserError


def checkpoint_settings(snakemake) -> dict:
    """The training job's checkpoint arguments: its `checkpoint` param as the file and
    engine.checkpoint_minutes as the interval (0: no checkpoints). The interval is read from the
    config, not a rule param: how often to save changes no result, so it must not rerun jobs."""
    minutes = snakemake.config["engine"]["checkpoint_minutes"]
    return {"checkpoint": snakemake.params.checkpoint if minutes > 0 else None, "checkpoint_every_s": 60 * minutes}


def run(snakemake, function, *args, **kwargs):
    """Call function(*args, **kwargs) with stdout/stderr sent to the rule's log (if it has one).

    A UserError ends the job with its one-line message on stderr (and in the log), no traceback.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    log = open(log_path, "w", buffering=1) if log_path else None
    try:
        with contextlib.ExitStack() as stack:
            if log:
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            try:
                return function(*args, **kwargs)
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
