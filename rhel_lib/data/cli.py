"""Shared helpers of the ``data_dir/*.py`` command-line scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rhel_lib.data.store import DEFAULT_ROOT

__all__ = ["base_parser", "run_cli"]


def base_parser(description: str, *, download: bool = False) -> argparse.ArgumentParser:
    """Parser with ``--root`` (and, for downloads, ``--sha256`` and ``--no-progress``)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=DEFAULT_ROOT,
        help=f"data root holding raw/ and processed/ (default: {DEFAULT_ROOT})",
    )
    if download:
        parser.add_argument(
            "--sha256",
            default=None,
            help="expected SHA-256 of the archive; the download fails if it differs",
        )
        parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return parser


def run_cli(action: Callable[[], object], prog: str) -> int:
    """Run ``action``; turn any failure into a one-line message on stderr and exit code 1."""
    try:
        action()
    except KeyboardInterrupt:
        message = "interrupted (a partial download is kept and resumes on re-run)"
        print(f"{prog}: {message}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure the same way
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {type(err).__name__}: {message}", file=sys.stderr)
        return 1
    return 0
