"""``vexplain`` entry point: subcommands, and one-line errors instead of tracebacks."""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from vexplain.errors import VexplainError

from . import bench_command, demo_command, evaluate_command, explain_command, layers_command, methods_command, serve_command

COMMANDS = (explain_command, methods_command, layers_command, demo_command, evaluate_command, bench_command, serve_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vexplain",
        description="Explain convolutional networks' decisions as pictures (gradient, CAM and perturbation methods, plugins), and measure how faithful each explanation is.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 internal error, 2 bad input or usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except VexplainError as error:
        if args.traceback:
            traceback.print_exc()
        print(f"vexplain {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vexplain: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the CLI never ends in a traceback unless asked to
        if args.traceback:
            traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        print(f"vexplain {args.command}: internal error: {type(error).__name__}: {first} (rerun with --traceback for details)", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
