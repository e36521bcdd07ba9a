"""Experiment configs: every shipped file loads, paper values, validation errors, overrides."""

import json

import pytest

from rhel_lib.config import (
    DATASETS,
    MODELS,
    PAPER_SEEDS,
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    available_configs,
    check_run,
    config_path,
    load_config,
    load_config_file,
    parse_override,
    parse_overrides,
)

PAPER = {  # dataset: lr, hidden, state, blocks, time channel, batch (SPEC §8)
    "EigenWorms": (1e-4, 64, 16, 2, False, 4),
    "SelfRegulationSCP1": (1e-4, 64, 256, 6, True, 32),
    "SelfRegulationSCP2": (1e-5, 64, 256, 6, True, 32),
    "EthanolConcentration": (1e-5, 16, 256, 4, False, 32),
    "Heartbeat": (1e-5, 64, 16, 2, True, 32),
    "MotorImagery": (1e-5, 128, 16, 2, False, 32),
    "PPG": (1e-4, 64, 16, 6, True, 4),
}


def test_every_model_and_dataset_has_a_config():
    assert set(available_configs()) == {(m, d) for m in MODELS for d in DATASETS}
    hopfield = available_configs(hopfield=True)[len(available_configs()) :]
    assert hopfield == [("HopfieldHRU", "CopyPaste"), ("HopfieldHRU", "HeidelbergDigits")]
    assert config_path("HopfieldHRU", "CopyPaste").parent.name == "hopfield"
    assert all(config_path(m, d).is_file() for m, d in available_configs(hopfield=True))


def test_check_run_names_what_each_model_allows():
    check_run("LinHRU", "Heartbeat", gradient="rhel", profile="full")
    check_run("HopfieldHRU", "CopyPaste", gradient="hebbian", profile="cpu")
    cases = [
        (("NonlinHRU", "PPG"), {"gradient": "eprop"}, "HopfieldHRU: bptt, rhel, hebbian, eprop"),
        (("HopfieldHRU", "Heartbeat"), {}, "HopfieldHRU: CopyPaste, HeidelbergDigits"),
        (("LinHRU", "HeidelbergDigits"), {}, "LinHRU/NonlinHRU: EigenWorms,"),
        (("LinHRU", "PPG"), {"profile": "cpu"}, "LinHRU/NonlinHRU: smoke, full;"),
        (("HopfieldHRU", "CopyPast"), {}, "did you mean 'CopyPaste'"),
        (("Hopfield", "CopyPaste"), {}, "did you mean 'HopfieldHRU'"),
    ]
    for args, kwargs, text in cases:
        with pytest.raises(ConfigError, match=text):
            check_run(*args, **kwargs)
    with pytest.raises(ConfigError, match="load_hopfield_config"):
        load_config("HopfieldHRU", "CopyPaste")


@pytest.mark.parametrize("model,dataset", [(m, d) for m in MODELS for d in DATASETS])
@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_shipped_configs_load_and_validate(model, dataset, profile):
    config = load_config(model, dataset, profile)
    assert (config.model, config.dataset) == (model, dataset)
    config.validate()
    assert config.eval_every <= config.num_steps
    # the file is strict JSON with only the documented top-level keys
    data = json.loads(config_path(model, dataset).read_text())
    assert set(data) <= {"model", "dataset", "description", "full", "smoke"}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_full_profile_has_the_paper_settings(model, dataset):
    config = load_config(model, dataset, "full")
    lr, hidden, state, blocks, time, batch = PAPER[dataset]
    if model == "NonlinHRU" and dataset == "SelfRegulationSCP1":
        hidden = 128
    assert (config.lr, config.hidden_dim, config.ssm_dim, config.num_blocks) == (
        lr,
        hidden,
        state,
        blocks,
    )
    assert (config.include_time, config.batch_size) == (time, batch)
    assert config.schedule == "constant" and config.epsilon == 0.1 and config.loss_scale == 1e4
    assert config.seeds == PAPER_SEEDS == (2345, 3456, 4567, 5678, 6789)
    assert (config.num_steps, config.eval_every, config.patience) == (100_000, 1000, 10)
    if model == "LinHRU":
        assert config.complex_ssm and config.train_step
    if dataset == "PPG":
        assert config.task == "regression" and config.output_step == 128
    else:
        assert config.classification and config.output_step == 1


def test_smoke_profile_is_small():
    full = load_config("LinHRU", "Heartbeat", "full")
    smoke = load_config("LinHRU", "Heartbeat", "smoke")
    assert smoke.num_steps < full.num_steps and smoke.hidden_dim < full.hidden_dim
    assert len(smoke.seeds) < len(full.seeds)
    assert smoke.lr == 1e-3 and smoke.include_time  # inherited from the file's full section


def _write(tmp_path, full, smoke=None, **top):
    data = {"model": "LinHRU", "dataset": "Heartbeat", "full": full, **top}
    if smoke is not None:
        data["smoke"] = smoke
    path = tmp_path / "Heartbeat.json"
    path.write_text(json.dumps(data))
    return path


def test_misspelled_key_names_key_file_and_suggestion(tmp_path):
    path = _write(tmp_path, {"lrr": 1e-3})
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    message = str(err.value)
    assert str(path) in message and "'lrr'" in message and "did you mean 'lr'" in message
    assert isinstance(err.value, ValueError)

    path = _write(tmp_path, {}, smoke={"num_step": 5})
    load_config_file(path, "full")  # the smoke section is checked when used
    with pytest.raises(ConfigError, match=r"\[smoke\].*'num_step'.*did you mean 'num_steps'"):
        load_config_file(path, "smoke")


@pytest.mark.parametrize(
    "full,key,fragment",
    [
        ({"batch_size": "32"}, "batch_size", "must be an integer"),
        ({"lr": "fast"}, "lr", "must be a number"),
        ({"include_time": 1}, "include_time", "true/false"),
        ({"seeds": [1, "two"]}, "seeds", "list of integers"),
        ({"batch_size": 2.5}, "batch_size", "must be an integer"),
    ],
)
def test_wrong_type_names_key_and_file(tmp_path, full, key, fragment):
    path = _write(tmp_path, full)
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert str(path) in str(err.value) and repr(key) in str(err.value)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "full,key",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_every": 200_000}, "eval_every"),
        ({"schedule": "cosin"}, "schedule"),
        ({"estimator": "two-sided"}, "estimator"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"patience": 0}, "patience"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"loss_scale": "big"}, "loss_scale"),
        ({"step": 1.5}, "step"),
        ({"output_step": 128}, "output_step"),  # classification dataset
    ],
)
def test_impossible_values_name_key_and_file(tmp_path, full, key):
    path = _write(tmp_path, full)
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert str(path) in str(err.value) and repr(key) in str(err.value)


def test_suggestion_for_bad_choice(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        load_config_file(_write(tmp_path, {"schedule": "cosin"}))


def test_unknown_model_dataset_and_top_level_keys(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'LinHRU'"):
        load_config("LinHUR", "Heartbeat")
    with pytest.raises(ConfigError, match="did you mean 'Heartbeat'"):
        load_config("LinHRU", "Heartbeet")
    with pytest.raises(ConfigError, match="'model'"):
        load_config_file(_write(tmp_path, {}, model="GRU"))
    with pytest.raises(ConfigError, match="'ful'"):
        load_config_file(_write(tmp_path, {}, ful={}))
    with pytest.raises(ConfigError, match=r"'lr'.*inside \"full\""):
        load_config_file(_write(tmp_path, {}, lr=1e-3))
    with pytest.raises(ConfigError, match="not valid JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{'lr': 1}")
        load_config_file(bad)
    with pytest.raises(ConfigError, match="unknown profile 'smok'; did you mean 'smoke'"):
        load_config_file(_write(tmp_path, {}), "smok")


def test_parse_override_uses_json_types():
    assert parse_override("lr=1e-3") == ("lr", 1e-3)
    assert parse_override("batch_size=8") == ("batch_size", 8)
    assert parse_override("lr=1") == ("lr", 1.0) and isinstance(parse_override("lr=1")[1], float)
    assert parse_override("num_steps=1e3") == ("num_steps", 1000)
    assert parse_override("seeds=[1, 2]") == ("seeds", (1, 2))
    assert parse_override("schedule=cosine") == ("schedule", "cosine")
    assert parse_override("loss_scale=auto") == ("loss_scale", "auto")
    assert parse_override("loss_scale=100") == ("loss_scale", 100.0)
    assert parse_override("grad_clip=null") == ("grad_clip", None)
    assert parse_override("include_time=true") == ("include_time", True)
    assert parse_overrides(["lr=1", "lr=2"]) == {"lr": 2.0}


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("lr", "expected key=value"),
        ("lrr=1", "did you mean 'lr'"),
        ("batch_size=0.5", "must be an integer"),
        ("lr=__import__('os').getcwd()", "must be a number"),  # never evaluated
        ("model=NonlinHRU", "--model"),
    ],
)
def test_bad_overrides(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_override(text)
    assert fragment in str(err.value) and "--override" in str(err.value)


def test_overrides_are_validated_and_name_the_file():
    config = load_config("LinHRU", "Heartbeat", "smoke", ["lr=3e-4", "schedule=cosine"])
    assert config.lr == 3e-4 and config.schedule == "cosine"
    with pytest.raises(ConfigError) as err:
        load_config("LinHRU", "Heartbeat", "smoke", ["eval_every=10000"])
    assert "Heartbeat.json" in str(err.value) and "'eval_every'" in str(err.value)
    with pytest.raises(ConfigError, match="'lr'"):
        apply_overrides(config, {"lr": -1.0})


def test_config_round_trips_through_dict():
    config = load_config("NonlinHRU", "PPG", "smoke")
    again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and hash(again) == hash(config)
