"""Process PPG-DaLiA into <root>/processed/PPG/PPGDaLiA/ (data.npz + manifest.json).

6 channels at 64 Hz (wrist ACC x3, BVP, EDA, TEMP), per-subject min-max to [-1, 1], windows of
49,920 steps with one heart-rate label every 128 steps, fixed subject split (train S1-S11,
validation S12-S13, test S14-S15). Run data_dir/download_ppg.py first.

Example:
    python data_dir/process_ppg.py
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
    from rhel_lib.data.ppg import LABEL_STEP, WINDOW, process_ppg

    parser = base_parser(__doc__)
    parser.add_argument("--window", type=int, default=WINDOW, help=f"steps per window ({WINDOW})")
    parser.add_argument(
        "--label-step", type=int, default=LABEL_STEP, help=f"steps per label ({LABEL_STEP})"
    )
    parser.add_argument(
        "--stride", type=int, default=None, help="steps between windows (default: --window)"
    )
    parser.add_argument(
        "--source-dir",
        default=None,
        help="folder holding S<i>/S<i>.pkl (default: <root>/raw/PPG/extracted)",
    )
    args = parser.parse_args(argv)

    def action() -> None:
        folder = process_ppg(
            args.root,
            source_dir=args.source_dir,
            window=args.window,
            label_step=args.label_step,
            stride=args.stride,
        )
        print(f"PPG-DaLiA: processed into {folder}")

    return run_cli(action, "process_ppg.py")


if __name__ == "__main__":
    raise SystemExit(main())
