"""Experiment configurations: a flat, validated schema, JSON files per model × dataset, profiles.

A configuration file ``rhel_lib/configs/<Model>/<Dataset>.json`` has the form::

    {
      "model": "LinHRU",
      "dataset": "Heartbeat",
      "description": "optional free text",
      "full":  {"lr": 1e-5, "hidden_dim": 64, ...},   # the paper's settings
      "smoke": {"num_steps": 200, ...}                 # CPU-minutes override of "full"
    }

The settings of a profile are resolved as (later wins)::

    ExperimentConfig defaults  <-  configs/defaults.json["full"]  <-  file["full"]
        (profile "smoke" only:)  <-  configs/defaults.json["smoke"]  <-  file["smoke"]
        <-  --override key=value ...

Every layer is checked: an unknown key (with the closest valid key suggested), a wrong type or
an impossible value raises :class:`ConfigError`, whose message names the key and the file (or
the ``--override`` it came from). Values are never ``eval``-ed: overrides are parsed with
:func:`json.loads` (a value that is not JSON is taken as a string). See
``rhel_lib/configs/README.md`` for the list of keys.

The Hopfield network of the follow-up (:data:`HOPFIELD_MODEL` on :data:`HOPFIELD_TASKS`) has
its own schema and files (``rhel_lib/configs/hopfield/<Task>.json``, read by
:func:`rhel_lib.hopfield_train.load_hopfield_config`); this module names what every model may
be combined with (:func:`check_run`), so that one command line serves both families.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ALL_DATASETS",
    "ALL_GRADIENTS",
    "ALL_MODELS",
    "ALL_PROFILES",
    "DATASETS",
    "GRADIENTS",
    "HOPFIELD_METHODS",
    "HOPFIELD_MODEL",
    "HOPFIELD_PROFILES",
    "HOPFIELD_TASKS",
    "MODELS",
    "PROFILES",
    "ConfigError",
    "DatasetInfo",
    "ExperimentConfig",
    "apply_overrides",
    "available_configs",
    "check_run",
    "config_path",
    "load_config",
    "load_config_file",
    "parse_override",
    "parse_overrides",
    "split_override",
]

MODELS = ("LinHRU", "NonlinHRU")
GRADIENTS = ("bptt", "rhel")
PROFILES = ("smoke", "full")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
ESTIMATORS = ("centred", "one-sided")
DTYPES = ("float32", "float64")
TARGET_SCALINGS = ("minmax", "none")
PAPER_SEEDS = (2345, 3456, 4567, 5678, 6789)
_FILE_KEYS = ("model", "dataset", "description", "full", "smoke")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives on disk (``collection``/``name`` for
    :func:`rhel_lib.data.load_processed`) and what it asks of the model."""

    collection: str
    name: str
    task: str  # "classification" or "regression"


#: Datasets a configuration may name. ``PPG`` is PPG-DaLiA (processed as ``PPG/PPGDaLiA``).
DATASETS: dict[str, DatasetInfo] = {
    "EigenWorms": DatasetInfo("UEA", "EigenWorms", "classification"),
    "SelfRegulationSCP1": DatasetInfo("UEA", "SelfRegulationSCP1", "classification"),
    "SelfRegulationSCP2": DatasetInfo("UEA", "SelfRegulationSCP2", "classification"),
    "EthanolConcentration": DatasetInfo("UEA", "EthanolConcentration", "classification"),
    "Heartbeat": DatasetInfo("UEA", "Heartbeat", "classification"),
    "MotorImagery": DatasetInfo("UEA", "MotorImagery", "classification"),
    "PPG": DatasetInfo("PPG", "PPGDaLiA", "regression"),
    "BasicMotions": DatasetInfo("UEA", "BasicMotions", "classification"),
    "JapaneseVowels": DatasetInfo("UEA", "JapaneseVowels", "classification"),
}

#: The Hopfield network of the follow-up: its tasks, training methods and profiles.
HOPFIELD_MODEL = "HopfieldHRU"
HOPFIELD_TASKS = ("CopyPaste", "HeidelbergDigits")
HOPFIELD_METHODS = ("bptt", "rhel", "hebbian", "eprop", "tbptt")
HOPFIELD_PROFILES = ("smoke", "cpu", "full")
#: Every model, dataset (or task), gradient (or training method) and profile of the CLI.
ALL_MODELS = (*MODELS, HOPFIELD_MODEL)
ALL_DATASETS = (*DATASETS, *HOPFIELD_TASKS)
ALL_GRADIENTS = tuple(dict.fromkeys((*GRADIENTS, *HOPFIELD_METHODS)))
ALL_PROFILES = tuple(dict.fromkeys((*HOPFIELD_PROFILES, *PROFILES)))


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the file it came from."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of one training run (model, optimiser, evaluation, RHEL, seeds).

    Defaults are the paper's common settings; the per-dataset values (``lr``, sizes,
    ``include_time``, ``batch_size``) come from the JSON files. Field comments are the
    documentation (also in ``rhel_lib/configs/README.md``).
    """

    model: str  # "LinHRU" or "NonlinHRU"
    dataset: str  # a key of DATASETS
    # --- model ---
    hidden_dim: int = 64  # H: channels between blocks
    ssm_dim: int = 16  # P: oscillators per unit
    num_blocks: int = 2  # HSSM blocks
    include_time: bool = False  # append a time channel t in [0, 1]
    complex_ssm: bool = True  # LinHRU: complex B, C
    parallel_scan: bool = True  # LinHRU: associative scan (False: sequential; compiles faster)
    train_step: bool | None = None  # train Δ (None: LinHRU yes, NonlinHRU no)
    step: float | None = None  # initial Δ (None: LinHRU sigmoid(U(0,1)), NonlinHRU 1e-4)
    dropout_rate: float = 0.05
    output_step: int = 1  # regression: one prediction every output_step steps
    target_scaling: str = "minmax"  # regression targets: "minmax" to [-1, 1] (train) or "none"
    dtype: str = "float32"
    # --- optimisation ---
    lr: float = 1e-4  # peak learning rate
    schedule: str = "constant"  # "constant", "cosine" or "warmup_cosine"
    warmup_steps: int = 0  # linear warm-up (constant and warmup_cosine)
    min_lr_ratio: float = 0.0  # cosine schedules decay to lr * min_lr_ratio
    grad_clip: float | None = None  # clip the global gradient norm (None: no clipping)
    batch_size: int = 32
    num_steps: int = 100_000  # maximum number of optimiser steps
    # --- evaluation and early stopping ---
    eval_every: int = 1000  # validate (and checkpoint) every eval_every steps
    patience: int | None = 10  # stop after this many evaluations without improvement
    eval_batch_size: int = 64
    # --- gradients (RHEL) ---
    epsilon: float = 0.1  # nudging strength ε
    loss_scale: float | str = 1e4  # γ, or "auto"
    estimator: str = "centred"  # "centred" or "one-sided"
    chunk_size: int | None = None  # steps per forward/echo chunk (None: the unit default)
    # --- seeds ---
    seeds: tuple[int, ...] = PAPER_SEEDS  # the seeds a full reproduction runs

    @property
    def task(self) -> str:
        return DATASETS[self.dataset].task

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``seeds`` as a list) that :meth:`from_dict` reads back."""
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
        """Validate ``values`` (a complete set of keys, or at least ``model`` and
        ``dataset``) and build the config; errors name ``source``."""
        checked = {}
        for key, value in values.items():
            _check_key(key, source)
            checked[key] = _coerce(key, value, source)
        values = checked
        for key in ("model", "dataset"):
            if key not in values:
                raise ConfigError(f"{source}: missing required key {key!r}")
        config = cls(**values)
        config.validate(source)
        return config

    def replace(self, source: str = "<replace>", **changes: Any) -> ExperimentConfig:
        """A validated copy with ``changes`` applied."""
        return ExperimentConfig.from_dict({**self.to_dict(), **changes}, source)

    def validate(self, source: str = "<config>") -> None:
        """Check the values (types were checked on construction by :meth:`from_dict`)."""

        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: key {key!r}: {why} (got {getattr(self, key)!r})")

        choices = {
            "model": MODELS,
            "dataset": tuple(DATASETS),
            "schedule": SCHEDULES,
            "estimator": ESTIMATORS,
            "dtype": DTYPES,
            "target_scaling": TARGET_SCALINGS,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise bad(key, f"must be one of {list(allowed)}{hint}")
        for key in ("hidden_dim", "ssm_dim", "num_blocks", "output_step", "batch_size"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        for key in ("num_steps", "eval_every", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise bad("chunk_size", "must be >= 1 or null")
        if self.patience is not None and self.patience < 1:
            raise bad("patience", "must be >= 1 or null (no early stopping)")
        for key in ("lr", "epsilon"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise bad(key, "must be a finite number > 0")
        if self.loss_scale != "auto" and not (
            isinstance(self.loss_scale, (int, float))
            and math.isfinite(self.loss_scale)
            and self.loss_scale > 0
        ):
            raise bad("loss_scale", 'must be a finite number > 0 or "auto"')
        if self.grad_clip is not None and not (
            math.isfinite(self.grad_clip) and self.grad_clip > 0
        ):
            raise bad("grad_clip", "must be a finite number > 0 or null")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise bad("dropout_rate", "must lie in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "must lie in [0, 1]")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", "must be >= 0")
        if self.warmup_steps >= self.num_steps:
            raise bad("warmup_steps", f"must be < num_steps = {self.num_steps}")
        if self.eval_every > self.num_steps:
            raise bad("eval_every", f"must be <= num_steps = {self.num_steps}")
        if self.step is not None:
            if self.model == "LinHRU" and not 0.0 < self.step < 1.0:
                raise bad("step", "LinHRU's initial Δ = sigmoid(Δ̂) must lie in (0, 1)")
            if not (math.isfinite(self.step) and self.step > 0):
                raise bad("step", "must be a finite number > 0")
        if not self.seeds:
            raise bad("seeds", "must list at least one seed")
        if any(s < 0 for s in self.seeds):
            raise bad("seeds", "seeds must be >= 0")
        if len(set(self.seeds)) != len(self.seeds):
            raise bad("seeds", "seeds must be distinct")
        if self.task == "classification" and self.output_step != 1:
            raise bad(
                "output_step",
                f"only regression uses output_step; {self.dataset} is "
                "a classification dataset (leave it at 1)",
            )


_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
_HINTS = typing.get_type_hints(ExperimentConfig)


#: Common names of settings under other spellings (used for "did you mean" hints).
_KEY_ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "hidden": "hidden_dim",
    "hidden_size": "hidden_dim",
    "state_dim": "ssm_dim",
    "state_size": "ssm_dim",
    "blocks": "num_blocks",
    "n_blocks": "num_blocks",
    "depth": "num_blocks",
    "steps": "num_steps",
    "max_steps": "num_steps",
    "batch": "batch_size",
    "eps": "epsilon",
    "gamma": "loss_scale",
    "seed": "seeds",
    "time": "include_time",
    "dropout": "dropout_rate",
    "dt": "step",
    "delta": "step",
    "early_stopping": "patience",
    "clip": "grad_clip",
}


def _suggest(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    alias = _KEY_ALIASES.get(key.lower().replace("-", "_"))
    if alias in valid:
        return f"; did you mean {alias!r}?"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_key(key: str, source: str) -> None:
    if key not in _FIELDS:
        raise ConfigError(
            f"{source}: unknown key {key!r}{_suggest(key, _FIELDS)} "
            f"(valid keys: {', '.join(sorted(_FIELDS))})"
        )


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(hint)]
        return " or ".join("null" if p == "NoneType" else p for p in parts)
    if origin is tuple:
        return "a list of integers"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce_to(hint: Any, value: Any) -> Any:
    """``value`` converted to type ``hint`` (int -> float allowed), or raise TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce_to(arg, value)
            except TypeError:
                continue
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce_to(int, v) for v in value)
        raise TypeError
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1e5 in JSON is a float
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError  # pragma: no cover - every field type is handled above


def _coerce(key: str, value: Any, source: str) -> Any:
    try:
        return _coerce_to(_HINTS[key], value)
    except TypeError:
        raise ConfigError(
            f"{source}: key {key!r} must be {_type_name(_HINTS[key])}; got {value!r} "
            f"({type(value).__name__})"
        ) from None


def _check_section(section: Any, source: str) -> dict[str, Any]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: must be a JSON object, got {type(section).__name__}")
    out = {}
    for key, value in section.items():
        if key in ("model", "dataset"):
            raise ConfigError(
                f"{source}: key {key!r} belongs at the top level of the file, not in a profile"
            )
        _check_key(key, source)
        out[key] = _coerce(key, value, source)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must contain a JSON object at the top level")
    return data


def _configs_root() -> Path:
    return Path(str(resources.files("rhel_lib") / "configs"))


def _defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    path = _configs_root() / "defaults.json"
    data = _read_json(path)
    for key in data:
        if key not in ("description", "full", "smoke"):
            raise ConfigError(f"{path}: unknown top-level key {key!r}{_suggest(key, PROFILES)}")
    return (
        _check_section(data.get("full", {}), f"{path} [full]"),
        _check_section(data.get("smoke", {}), f"{path} [smoke]"),
    )


def _per_model(what: str) -> str:
    """What each model family allows, e.g. ``"LinHRU/NonlinHRU: bptt, rhel; HopfieldHRU: …"``."""
    hssm, hopfield = {
        "dataset": (tuple(DATASETS), HOPFIELD_TASKS),
        "gradient": (GRADIENTS, HOPFIELD_METHODS),
        "profile": (PROFILES, HOPFIELD_PROFILES),
    }[what]
    return f"{'/'.join(MODELS)}: {', '.join(hssm)}; {HOPFIELD_MODEL}: {', '.join(hopfield)}"


def check_run(
    model: str, dataset: str, *, gradient: str | None = None, profile: str | None = None
) -> None:
    """Raise :class:`ConfigError` unless ``model`` runs on ``dataset`` (and, when given, with
    ``gradient`` and ``profile``): the HSSMs (:data:`MODELS`) train on :data:`DATASETS` with
    :data:`GRADIENTS` and :data:`PROFILES`, :data:`HOPFIELD_MODEL` on :data:`HOPFIELD_TASKS`
    with :data:`HOPFIELD_METHODS` and :data:`HOPFIELD_PROFILES`. The message lists what each
    model allows."""
    if model not in ALL_MODELS:
        raise ConfigError(
            f"unknown model {model!r}{_suggest(model, ALL_MODELS)} (known: {', '.join(ALL_MODELS)})"
        )
    hopfield = model == HOPFIELD_MODEL
    checks = (
        ("dataset", dataset, HOPFIELD_TASKS if hopfield else tuple(DATASETS)),
        ("gradient", gradient, HOPFIELD_METHODS if hopfield else GRADIENTS),
        ("profile", profile, HOPFIELD_PROFILES if hopfield else PROFILES),
    )
    for what, value, allowed in checks:
        if value is not None and value not in allowed:
            kind = "datasets (tasks)" if what == "dataset" else f"{what}s"
            raise ConfigError(
                f"{model} does not run with {what} {value!r}{_suggest(str(value), allowed)} "
                f"(allowed {kind} per model: {_per_model(what)})"
            )


def config_path(model: str, dataset: str) -> Path:
    """Path of the shipped config of ``model`` × ``dataset`` (checked names; for
    :data:`HOPFIELD_MODEL`: ``configs/hopfield/<Task>.json``)."""
    check_run(model, dataset)
    if model == HOPFIELD_MODEL:
        return _configs_root() / "hopfield" / f"{dataset}.json"
    return _configs_root() / model / f"{dataset}.json"


def available_configs(*, hopfield: bool = False) -> list[tuple[str, str]]:
    """``(model, dataset)`` of every shipped HSSM config file (and with ``hopfield=True``
    also ``(HOPFIELD_MODEL, task)`` of the Hopfield configs)."""
    root = _configs_root()
    pairs = sorted(
        (m, p.stem) for m in MODELS for p in (root / m).glob("*.json") if p.stem in DATASETS
    )
    if hopfield:
        pairs += [
            (HOPFIELD_MODEL, t) for t in HOPFIELD_TASKS if config_path(HOPFIELD_MODEL, t).is_file()
        ]
    return pairs


def load_config_file(
    path: str | Path, profile: str = "full", overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Load, resolve (defaults ← full [← smoke]) and validate one config file."""
    path = Path(path)
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}{_suggest(profile, PROFILES)}")
    data = _read_json(path)
    for key in data:
        if key not in _FILE_KEYS:
            hint = _suggest(key, _FILE_KEYS)
            if key in _FIELDS:
                hint = ' (settings go inside "full" or "smoke")'
            raise ConfigError(f"{path}: unknown top-level key {key!r}{hint}")
    for key in ("model", "dataset", "full"):
        if key not in data:
            raise ConfigError(f"{path}: missing top-level key {key!r}")
    if not isinstance(data.get("description", ""), str):
        raise ConfigError(f"{path}: key 'description' must be a string")
    base = {"model": data["model"], "dataset": data["dataset"]}
    for key in ("model", "dataset"):
        if not isinstance(base[key], str):
            raise ConfigError(f"{path}: key {key!r} must be a string; got {base[key]!r}")
    default_full, default_smoke = _defaults()
    values = {**base, **default_full, **_check_section(data["full"], f"{path} [full]")}
    if profile == "smoke":
        values.update(default_smoke)
        values.update(_check_section(data.get("smoke", {}), f"{path} [smoke]"))
    source = f"{path} [{profile}]"
    config = ExperimentConfig.from_dict(values, source)
    if overrides:
        config = apply_overrides(config, overrides, source=f"{path} [{profile}] with --override")
    return config


def load_config(
    model: str,
    dataset: str,
    profile: str = "full",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> ExperimentConfig:
    """The shipped config of ``model`` × ``dataset`` for ``profile``, with ``overrides``
    (a mapping, or ``"key=value"`` strings as on the command line). HSSMs only: the Hopfield
    network's configs load with :func:`rhel_lib.hopfield_train.load_hopfield_config`."""
    if model == HOPFIELD_MODEL:
        raise ConfigError(
            f"{model} has its own config schema: use rhel_lib.hopfield_train.load_hopfield_config"
        )
    path = config_path(model, dataset)
    if not path.is_file():
        raise ConfigError(f"{path}: no shipped config for {model} on {dataset}")
    config = load_config_file(path, profile)
    if config.model != model or config.dataset != dataset:
        raise ConfigError(
            f"{path}: file declares model={config.model!r}, dataset={config.dataset!r}, "
            f"but it is the config of {model} × {dataset}"
        )
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = parse_overrides(overrides)
        config = apply_overrides(config, overrides, source=f"{path} [{profile}] with --override")
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``; the value is parsed with :func:`json.loads`
    (``lr=1e-3`` -> 0.001, ``seeds=[1,2]``, ``step=null``), and kept as a string when it is
    not JSON (``schedule=cosine``). The key is checked against the schema."""
    key, value = split_override(text)
    source = f"--override {text!r}"
    _check_key(key, source)
    return key, _coerce(key, value, source)


def split_override(text: str, fixed: Sequence[str] = ("model", "dataset")) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` with the value parsed by :func:`json.loads` (kept as
    a string when it is not JSON), for any schema: the key is not checked, except that the
    ``fixed`` keys (chosen by their own command-line options) are refused."""
    if "=" not in text:
        raise ConfigError(f"--override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if key in fixed:
        option = "--dataset" if key == "task" else f"--{key}"
        raise ConfigError(f"--override {text!r}: choose the {key} with {option}, not an override")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def parse_overrides(texts: Iterable[str]) -> dict[str, Any]:
    """Parse several ``key=value`` strings (later ones win)."""
    out: dict[str, Any] = {}
    for text in texts:
        key, value = parse_override(text)
        out[key] = value
    return out


def apply_overrides(
    config: ExperimentConfig, overrides: Mapping[str, Any], source: str = "--override"
) -> ExperimentConfig:
    """A validated copy of ``config`` with ``overrides`` (already-typed values) applied."""
    for key in overrides:
        if key in ("model", "dataset"):
            raise ConfigError(f"{source}: {key!r} cannot be overridden")
    return ExperimentConfig.from_dict({**config.to_dict(), **dict(overrides)}, source)
