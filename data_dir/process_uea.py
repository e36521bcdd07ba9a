"""Process UEA datasets into <root>/processed/UEA/<name>/ (data.npz + manifest.json).

The six paper datasets must be downloaded first (data_dir/download_uea.py); BasicMotions and
JapaneseVowels are read from the files shipped inside the `aeon` package (offline).

Examples:
    python data_dir/process_uea.py --dataset BasicMotions
    python data_dir/process_uea.py --dataset offline
    python data_dir/process_uea.py --dataset all
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
    from rhel_lib.data.uea import OFFLINE_DATASETS, PAPER_DATASETS, process_uea

    parser = base_parser(__doc__)
    parser.add_argument(
        "--dataset",
        required=True,
        choices=[*PAPER_DATASETS, *OFFLINE_DATASETS, "all", "offline"],
        help="a dataset name, 'all' (the six paper datasets) or 'offline' (BasicMotions and "
        "JapaneseVowels)",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="z-score every channel with the original train part's statistics (default: raw)",
    )
    parser.add_argument(
        "--source-dir",
        default=None,
        help="folder with <name>_TRAIN.ts/_TEST.ts (default: <root>/raw/UEA/<name>, or the "
        "aeon package for the offline sets)",
    )
    args = parser.parse_args(argv)
    if args.dataset == "all":
        names = list(PAPER_DATASETS)
    elif args.dataset == "offline":
        names = list(OFFLINE_DATASETS)
    else:
        names = [args.dataset]
    if args.source_dir and len(names) > 1:
        parser.error("--source-dir needs a single --dataset")

    def action() -> None:
        for name in names:
            folder = process_uea(
                name, args.root, source_dir=args.source_dir, normalize=args.normalize
            )
            print(f"{name}: processed into {folder}")

    return run_cli(action, "process_uea.py")


if __name__ == "__main__":
    raise SystemExit(main())
