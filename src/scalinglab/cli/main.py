"""The `scalinglab` command: one subcommand per module of scalinglab.cli.

Each command module defines `add_arguments(parser)` and `run(args)`; the modules import their heavy
dependencies (torch, statsmodels) inside `run`, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scalinglab.core.errors import UserError

# name -> (module, one-line help)
COMMANDS = {
    "fit": ("scalinglab.cli.fit", "fit a power law log(y) ~ log(x) to a runs table"),
    "dimension": ("scalinglab.cli.dimension", "estimate the intrinsic dimension of points"),
    "report": ("scalinglab.cli.report", "fits, a figure and a summary of your own runs table, in one folder"),
    "implicit-bias": ("scalinglab.cli.implicit_bias", "gamma1, gamma2 and lambda_opt from norm/error rows"),
    "import-tensorboard": ("scalinglab.cli.import_tensorboard", "turn TensorBoard event files into a runs table"),
    "import-wandb": ("scalinglab.cli.import_wandb", "turn W&B exports or offline runs into a runs table"),
    "import-mlflow": ("scalinglab.cli.import_mlflow", "turn a local MLflow store (mlruns) into a runs table"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalinglab", description=__doc__.splitlines()[0])
    from scalinglab import __version__

    parser.add_argument("--version", action="version", version=f"scalinglab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except UserError as exc:
        print(f"scalinglab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
