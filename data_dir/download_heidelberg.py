"""Download Heidelberg Digits audio and compute log-mel features.

Downloads hd_audio.tar.gz (resumable, checksummed) into <root>/raw/Heidelberg/, extracts it
safely and writes <root>/processed/Heidelberg/HeidelbergDigits/ (data.npz + manifest.json):
20 classes (digit + 10 * german), published train/test split, 40 log-mel bands, 10 ms hop,
150 frames.

Examples:
    python data_dir/download_heidelberg.py
    python data_dir/download_heidelberg.py --skip-download --n-mels 64   # re-run features only
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
    from rhel_lib.data.heidelberg import HD_URL, download_heidelberg, process_heidelberg

    parser = base_parser(__doc__, download=True)
    parser.add_argument("--url", default=HD_URL, help=f"archive URL (default: {HD_URL})")
    step = parser.add_mutually_exclusive_group()
    step.add_argument(
        "--skip-download", action="store_true", help="only compute features from raw files"
    )
    step.add_argument("--no-process", action="store_true", help="only download and extract")
    parser.add_argument("--n-mels", type=int, default=40, help="mel bands (40)")
    parser.add_argument("--n-frames", type=int, default=150, help="frames per sample (150)")
    parser.add_argument("--hop-ms", type=float, default=10.0, help="hop in ms (10)")
    parser.add_argument("--win-ms", type=float, default=25.0, help="window in ms (25)")
    parser.add_argument("--sample-rate", type=int, default=16_000, help="analysis rate (16000)")
    parser.add_argument(
        "--no-normalize", action="store_true", help="keep raw log-mel values (no z-score)"
    )
    args = parser.parse_args(argv)

    def action() -> None:
        if not args.skip_download:
            folder = download_heidelberg(
                args.root, url=args.url, sha256=args.sha256, progress=not args.no_progress
            )
            print(f"Heidelberg Digits: raw files in {folder}")
        if not args.no_process:
            out = process_heidelberg(
                args.root,
                n_mels=args.n_mels,
                n_frames=args.n_frames,
                target_sr=args.sample_rate,
                win_ms=args.win_ms,
                hop_ms=args.hop_ms,
                normalize=not args.no_normalize,
                progress=not args.no_progress,
            )
            print(f"Heidelberg Digits: processed into {out}")

    return run_cli(action, "download_heidelberg.py")


if __name__ == "__main__":
    raise SystemExit(main())
