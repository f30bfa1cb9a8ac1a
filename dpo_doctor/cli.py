"""Command line: `dpo-doctor scan|report|tui|watch|train|demo|zoo|repro|rules|explain`.

Each command is a thin wrapper: it builds the entry point's config dataclass from flags and calls one
function. User errors (`UserError`) print one line and exit 2; anything else is a bug and keeps its traceback.
Heavy imports (torch, transformers) happen inside commands, so `--help` and the views start instantly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from dpo_doctor.errors import UserError

app = typer.Typer(
    name="dpo-doctor",
    help="Diagnose a DPO fine-tuning run: score every checkpoint against its reference, name what went wrong, "
    "and say what to change.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# ---- commands are added below, one block each -------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: UserError -> one line on stderr, exit 2."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"dpo-doctor: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("dpo-doctor: interrupted; everything scored so far is cached, re-run to resume.", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()
