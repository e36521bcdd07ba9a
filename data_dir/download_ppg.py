"""Download PPG-DaLiA (UCI 495) into <root>/raw/PPG/ and extract the subject pickles.

The archive is large (a few GB); the download resumes if interrupted (re-run the command).

Example:
    python data_dir/download_ppg.py && python data_dir/process_ppg.py
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
    from rhel_lib.data.ppg import PPG_URL, download_ppg

    parser = base_parser(__doc__, download=True)
    parser.add_argument("--url", default=PPG_URL, help=f"archive URL (default: {PPG_URL})")
    args = parser.parse_args(argv)

    def action() -> None:
        folder = download_ppg(
            args.root, url=args.url, sha256=args.sha256, progress=not args.no_progress
        )
        print(f"PPG-DaLiA: subject files in {folder}")

    return run_cli(action, "download_ppg.py")


if __name__ == "__main__":
    raise SystemExit(main())
