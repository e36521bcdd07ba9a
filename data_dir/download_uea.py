"""Download UEA archive datasets into <root>/raw/UEA/ (resumable, checksummed, progress bar).

Examples:
    python data_dir/download_uea.py --dataset Heartbeat
    python data_dir/download_uea.py --dataset all
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import rhel_lib  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from rhel_lib.data.cli import base_parser, run_cli
    from rhel_lib.data.uea import PAPER_DATASETS, UEA_BASE_URL, download_uea

    parser = base_parser(__doc__, download=True)
    parser.add_argument(
        "--dataset",
        required=True,
        choices=[*PAPER_DATASETS, "all"],
        help="one of the six paper datasets, or 'all' (BasicMotions and JapaneseVowels ship "
        "with aeon: process them directly)",
    )
    parser.add_argument(
        "--base-url", default=UEA_BASE_URL, help=f"archive location (default: {UEA_BASE_URL})"
    )
    args = parser.parse_args(argv)
    names = list(PAPER_DATASETS) if args.dataset == "all" else [args.dataset]
    if args.sha256 and len(names) > 1:
        parser.error("--sha256 needs a single --dataset")

    def action() -> None:
        for name in names:
            folder = download_uea(
                name,
                args.root,
                base_url=args.base_url,
                sha256=args.sha256,
                progress=not args.no_progress,
            )
            print(f"{name}: raw files in {folder}")

    return run_cli(action, "download_uea.py")


if __name__ == "__main__":
    raise SystemExit(main())
