"""Command line: ``python -m rhel_lib <command> ...``.

Commands (``python -m rhel_lib <command> --help`` for each):

* ``train``: train one model × dataset × gradient for one or more seeds (resumable): the HSSMs
  (``LinHRU``, ``NonlinHRU``; gradients ``bptt``, ``rhel``) on the UEA / PPG datasets, and the
  Hopfield network (``HopfieldHRU``; methods ``bptt``, ``rhel``, ``hebbian``, ``eprop``,
  ``tbptt``) on the tasks ``CopyPaste`` and ``HeidelbergDigits``, through one dispatch
  (:func:`rhel_lib.reproduce.run_training`);
* ``config``: print the resolved configuration of a profile (after overrides) as JSON;
* ``configs``: list the shipped configurations (the Hopfield ones included);
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
from pathlib import Path
from typing import Any

from rhel_lib.config import (
    ALL_DATASETS,
    ALL_GRADIENTS,
    ALL_MODELS,
    ALL_PROFILES,
    HOPFIELD_MODEL,
    ConfigError,
    check_run,
    parse_overrides,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


def common_parent() -> argparse.ArgumentParser:
    """Options every sub-command has (pass as ``parents=[common_parent()]``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parent


def _add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        choices=ALL_MODELS,
        help="Hamiltonian unit: the HSSMs LinHRU, NonlinHRU or the Hopfield network HopfieldHRU",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        choices=list(ALL_DATASETS),
        help="dataset (PPG = PPG-DaLiA); HopfieldHRU: the task CopyPaste or HeidelbergDigits",
    )
    parser.add_argument(
        "--profile",
        default="full",
        choices=ALL_PROFILES,
        help="'full': the paper's settings (default); 'smoke': a CPU-minutes version; "
        "'cpu' (HopfieldHRU only): the CPU reproduction of the follow-up's table",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one setting, e.g. --override lr=1e-3 --override seeds=[1,2] "
        "(values are JSON; see rhel_lib/configs/README.md for the keys); repeatable",
    )


def _overrides(model: str, texts: Sequence[str]) -> dict[str, Any]:
    """``--override`` strings as typed values: the HSSM schema checks keys and types here, the
    Hopfield schema when the config is resolved."""
    if model == HOPFIELD_MODEL:
        from rhel_lib.hopfield_train import parse_override

        return dict(parse_override(text) for text in texts)
    return parse_overrides(texts)


def _resolve(args: argparse.Namespace, gradient: str | None = None):
    """``(overrides, config dict)`` of the command line, after checking that the model runs on
    the dataset (with the gradient and profile)."""
    from rhel_lib.reproduce import resolve_config

    check_run(args.model, args.dataset, gradient=gradient, profile=args.profile)
    overrides = _overrides(args.model, args.override)
    return overrides, resolve_config(args.model, args.dataset, args.profile, overrides)


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        parents=[common_parent()],
        help="train a model on a dataset with BPTT, RHEL, … (resumable)",
        description="Train one model × dataset × gradient for the given seeds: an HSSM "
        "(LinHRU, NonlinHRU; gradients bptt, rhel) on a UEA/PPG dataset, or the Hopfield "
        "network (HopfieldHRU; bptt, rhel, hebbian, eprop, tbptt) on CopyPaste or "
        "HeidelbergDigits. Results (and the HSSMs' checkpoints) go to "
        "<output-dir>/<profile>/<model>/<dataset>/<gradient>/seed<seed>/. Re-running the same "
        "command resumes an interrupted run from its last checkpoint and skips a finished one.",
    )
    _add_experiment_arguments(parser)
    parser.add_argument(
        "--gradient",
        required=True,
        nargs="+",
        choices=ALL_GRADIENTS,
        help="one or more of: bptt, rhel (every model); hebbian (local contrastive Hebbian "
        "RHEL), eprop, tbptt (truncated BPTT): HopfieldHRU only",
    )
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
    from rhel_lib.results import check_seed

    # every gradient and seed is checked before the first run starts
    runs = []
    for gradient in dict.fromkeys(args.gradient):  # in the given order, once each
        overrides, config = _resolve(args, gradient)
        seeds = config["seeds"] if args.seed is None else args.seed
        for seed in seeds:
            try:
                check_seed(seed)
            except ValueError as err:
                raise ConfigError(f"--seed: {err}") from None
        runs.append((gradient, overrides, seeds))
    return max(_train_seeds(args, *run) for run in runs)


def _train_seeds(args: argparse.Namespace, gradient: str, overrides, seeds) -> int:
    """Train ``seeds`` of one gradient; the worst exit code."""
    from rhel_lib.reproduce import run_training
    from rhel_lib.results import clear_run, run_dir

    output_dir = Path(args.data_root) / "results" if args.output_dir is None else args.output_dir
    worst = EXIT_OK
    for seed in seeds:
        folder = run_dir(output_dir, args.profile, args.model, args.dataset, gradient, seed)
        if args.restart:
            clear_run(folder)
        result = run_training(
            profile=args.profile,
            model=args.model,
            dataset=args.dataset,
            gradient=gradient,
            seed=seed,
            overrides=overrides,
            data_root=args.data_root,
            output_dir=output_dir,
            progress=not args.no_progress,
        )
        label = f"{gradient} seed {seed}"
        if result["status"] == "diverged":
            if args.no_progress:  # (with progress output, the trainer has said so already)
                print(f"python -m rhel_lib train: error: {result['message']}", file=sys.stderr)
            worst = EXIT_DIVERGED
        elif result.get("skipped"):
            if args.no_progress:  # (with progress output, the trainer has said so already)
                print(f"{label}: already finished, skipped ({folder}/result.json)")
        elif "test_metric" in result:  # an HSSM: test metric of the best validation
            print(
                f"{label}: test {result['metric']} {result['test_metric']:.4f} "
                f"(best val {result['best_val_metric']:.4f} at step {result['best_step']}) "
                f"-> {folder}/result.json"
            )
        else:  # the Hopfield network: final_metric
            print(
                f"{label}: test {result['metric']} {result['final_metric']:.4f} "
                f"(after {result['steps']} steps) -> {folder}/result.json"
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
    from rhel_lib.config import config_path

    _, config = _resolve(args)
    print(
        json.dumps(
            {
                "file": str(config_path(args.model, args.dataset)),
                "profile": args.profile,
                "config": config,
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

    for model, dataset in available_configs(hopfield=True):
        print(f"{model:11s} {dataset:22s} {config_path(model, dataset)}")
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
