"""Command line: ``python -m rhel_lib <command> ...``.

Commands (``python -m rhel_lib <command> --help`` for each):

* ``train``: train one model × dataset × gradient for one or more seeds (resumable);
* ``config``: print the resolved configuration of a profile (after overrides) as JSON;
* ``configs``: list the shipped configurations;
* ``reproduce``: run the reproduction matrix of a profile, one papermill-executed notebook per
  run (:mod:`rhel_lib.reproduce`; local, ``--jobs N``, SLURM through submitit);
* ``results``: tables (Markdown/CSV) and a figure of the finished runs next to the published
  numbers (:mod:`rhel_lib.aggregate`).

Exit codes: 0 success (a run that was already finished counts), 1 an error (invalid
configuration, missing dataset, conflicting run folder: one line on stderr, the traceback only
with ``--debug``; ``reproduce``: any run failed), 2 wrong command-line usage, 3 a run diverged
(NaN/Inf loss).

Other modules add commands by appending ``(name, add_parser_function)`` to :data:`COMMANDS`:
``add_parser_function(subparsers)`` creates the sub-parser and sets ``func=handler`` with
``handler(args) -> int``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from rhel_lib.config import DATASETS, GRADIENTS, MODELS, PROFILES, ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


def common_parent() -> argparse.ArgumentParser:
    """Options every sub-command has (pass as ``parents=[common_parent()]``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parent


def _add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=MODELS, help="Hamiltonian unit")
    parser.add_argument(
        "--dataset", required=True, choices=list(DATASETS), help="dataset (PPG = PPG-DaLiA)"
    )
    parser.add_argument(
        "--profile",
        default="full",
        choices=PROFILES,
        help="'full': the paper's settings (default); 'smoke': a CPU-minutes version",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one setting, e.g. --override lr=1e-3 --override seeds=[1,2] "
        "(values are JSON; see rhel_lib/configs/README.md for the keys); repeatable",
    )


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        parents=[common_parent()],
        help="train a model on a dataset with BPTT or RHEL (resumable)",
        description="Train one model × dataset × gradient for the given seeds. Results and "
        "checkpoints go to <output-dir>/<profile>/<model>/<dataset>/<gradient>/seed<seed>/. "
        "Re-running the same command resumes an interrupted run from its last checkpoint "
        "and skips a finished one.",
    )
    _add_experiment_arguments(parser)
    parser.add_argument("--gradient", required=True, choices=GRADIENTS, help="BPTT or RHEL")
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=None,
        help="seed(s) to run (default: every seed of the profile's config)",
    )
    parser.add_argument(
        "--data-root", default="data_dir", help="root of processed datasets (default data_dir)"
    )
    parser.add_argument(
        "--output-dir", default=None, help="results root (default <data-root>/results)"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard an existing checkpoint/result of the run and start again",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from rhel_lib.config import load_config
    from rhel_lib.train import train

    config = load_config(args.model, args.dataset, args.profile, args.override)
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    seeds = config.seeds if args.seed is None else args.seed
    for seed in seeds:
        if seed < 0:
            raise ConfigError(f"--seed must be >= 0; got {seed}")
    worst = EXIT_OK
    for seed in seeds:
        result = train(
            config,
            gradient=args.gradient,
            seed=seed,
            profile=args.profile,
            output_dir=args.output_dir,
            data_root=args.data_root,
            progress=not args.no_progress,
            resume=not args.restart,
        )
        folder = result.get("run_dir")
        if result["status"] == "diverged":
            if args.no_progress:  # (with progress output, train() has said so already)
                print(f"python -m rhel_lib train: error: {result['message']}", file=sys.stderr)
            worst = EXIT_DIVERGED
        elif result.get("skipped"):
            if args.no_progress:  # (with progress output, train() has said so already)
                print(f"seed {seed}: already finished, skipped ({folder}/result.json)")
        else:
            print(
                f"seed {seed}: test {result['metric']} {result['test_metric']:.4f} "
                f"(best val {result['best_val_metric']:.4f} at step {result['best_step']}) "
                f"-> {folder}/result.json"
            )
    return worst


def _add_config(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        parents=[common_parent()],
        help="print the resolved configuration as JSON",
        description="Print the settings a run would use (shipped file, profile, overrides).",
    )
    _add_experiment_arguments(parser)
    parser.set_defaults(func=_run_config)


def _run_config(args: argparse.Namespace) -> int:
    from rhel_lib.config import config_path, load_config

    config = load_config(args.model, args.dataset, args.profile, args.override)
    print(
        json.dumps(
            {
                "file": str(config_path(args.model, args.dataset)),
                "profile": args.profile,
                "config": config.to_dict(),
            },
            indent=2,
        )
    )
    return EXIT_OK


def _add_configs(subparsers) -> None:
    parser = subparsers.add_parser(
        "configs", parents=[common_parent()], help="list the shipped configurations"
    )
    parser.set_defaults(func=_run_configs)


def _run_configs(args: argparse.Namespace) -> int:
    from rhel_lib.config import available_configs, config_path

    for model, dataset in available_configs():
        print(f"{model:10s} {dataset:22s} {config_path(model, dataset)}")
    return EXIT_OK


def _add_reproduce(subparsers) -> None:
    from rhel_lib.reproduce import add_reproduce_parser

    add_reproduce_parser(subparsers)


def _add_results(subparsers) -> None:
    from rhel_lib.aggregate import add_results_parser

    add_results_parser(subparsers)


#: ``(name, add_parser)`` of every sub-command; other modules may append to it.
COMMANDS: list[tuple[str, Callable]] = [
    ("train", _add_train),
    ("config", _add_config),
    ("configs", _add_configs),
    ("reproduce", _add_reproduce),
    ("results", _add_results),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rhel_lib",
        description="Recurrent Hamiltonian Echo Learning: training and reproduction tools.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _, add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from rhel_lib.data import DatasetError
    from rhel_lib.train import RunConflictError

    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(err).split())  # one line, even for multi-line messages
        if not isinstance(err, (ConfigError, DatasetError, RunConflictError)):
            message = f"{type(err).__name__}: {message} (add --debug for the traceback)"
        print(f"python -m rhel_lib {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
