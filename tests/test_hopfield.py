"""HopfieldHRU: its Hamiltonian, RHEL = BPTT through the generic echo (float64), and the
training entry point of :mod:`rhel_lib.hopfield_train` on tiny settings."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, random_inputs, rel_error, slope

from rhel_lib.hamiltonian import PhaseState
from rhel_lib.integrators import leapfrog_step
from rhel_lib.units import HopfieldHRU
from rhel_lib.units.hopfield import HopfieldHamiltonian, hopfield_param_count

H, N, O, K = 3, 8, 2, 160


def _loss(unit, u, target):
    return jnp.mean((unit(u) - target) ** 2)


_grads = jax.jit(jax.grad(_loss, argnums=(0, 1)))


def _unit(seed=0, **kwargs):
    options = dict(step=0.3, train_step=True, gradient="rhel", dtype=jnp.float64)
    options.update(kwargs)
    return HopfieldHRU(H, N, O, key=jax.random.PRNGKey(seed), **options)


def _compare(unit, seed=0, length=K):
    u, target = random_inputs(seed, (length, H)), random_inputs(seed + 1, (length, O))
    (g, gu), (g_ref, gu_ref) = (_grads(m, u, target) for m in (unit, unit.with_gradient("bptt")))
    errors = leaf_errors(g, g_ref)
    errors["inputs"] = rel_error(gu, gu_ref)
    return errors


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
def test_rhel_equals_bptt_for_every_parameter(nonlinearity):
    """Generic echo (rhel_lib.echo), ε = 1e-4, loss_scale "auto": ≤ 1e-6 for every leaf
    (M, b, B, log α, log β, log Δ, C, d) and for the inputs; every leaf gets a gradient."""
    unit = _unit(nonlinearity=nonlinearity, epsilon=1e-4)
    errors = _compare(unit)
    assert len(errors) == 9
    assert max(errors.values()) < 1e-6, errors
    u, target = random_inputs(0, (K, H)), random_inputs(1, (K, O))
    g, _ = _grads(unit.with_gradient("bptt"), u, target)
    for path, leaf in jax.tree_util.tree_leaves_with_path(eqx.filter(g, eqx.is_inexact_array)):
        assert float(jnp.linalg.norm(leaf)) > 1e-8, jax.tree_util.keystr(path)


@jax.jit
def _hamiltonian_errors(ham, u, g, epsilon):
    """Relative error of the generic echo (ε traced: one compilation) against BPTT, over all
    of the Hamiltonian's parameters."""
    from rhel_lib.echo import GradientConfig, echo_gradients, forward_positions

    params, static = eqx.partition(ham, eqx.is_inexact_array)
    _, vjp = jax.vjp(lambda p: forward_positions(eqx.combine(p, static), u), params)
    reference = vjp(g)[0]
    final = ham.trajectory(ham.zero_state(u.dtype), u)[0]
    config = GradientConfig("rhel")
    estimate = echo_gradients(params, static, u, final, g, config, epsilon=epsilon)[0]
    a, b = (jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(t)])
            for t in (estimate, reference))  # fmt: skip
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


def test_rhel_error_falls_as_eps_squared():
    ham = _unit(seed=3, step=0.5).hamiltonian
    u, g = random_inputs(3, (K, H)), random_inputs(4, (K, N))
    eps = np.array([0.4, 0.2, 0.1, 0.05])
    errors = [float(_hamiltonian_errors(ham, u, g, jnp.asarray(e))) for e in eps]
    assert 1.8 < slope(eps, errors) < 2.2, errors


def test_frozen_step_gets_no_gradient():
    u, target = random_inputs(4, (60, H)), random_inputs(5, (60, O))
    frozen, _ = _grads(_unit(seed=1, train_step=False), u, target)
    assert float(frozen.hamiltonian.log_step) == 0.0
    assert float(jnp.linalg.norm(frozen.hamiltonian.M)) > 1e-6


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
def test_closed_form_force_matches_autodiff(nonlinearity):
    ham = _unit(seed=2, nonlinearity=nonlinearity).hamiltonian
    phi, u = random_inputs(6, (N,)), random_inputs(7, (H,))
    np.testing.assert_allclose(
        ham.potential_grad(phi, u), jax.grad(ham.potential)(phi, u), rtol=1e-12, atol=1e-14
    )
    pi = random_inputs(8, (N,))
    np.testing.assert_allclose(ham.kinetic_grad(pi), jax.grad(ham.kinetic)(pi), rtol=1e-13)


def test_coupling_is_symmetric_whatever_m_is():
    ham = _unit().hamiltonian
    M = random_inputs(9, (N, N))  # not symmetric
    ham = eqx.tree_at(lambda h: h.M, ham, M)
    np.testing.assert_array_equal(ham.W, ham.W.T)
    np.testing.assert_allclose(ham.W, 0.5 * (M + M.T))
    # the potential uses W: ρᵀMρ = ρᵀWρ, and the force is ρ' ⊙ (Wρ/β + b + Bu) + αφ
    phi, u = random_inputs(10, (N,)), random_inputs(11, (H,))
    r = jnp.tanh(phi)
    expected = ham.step * (
        ham.alpha * phi + (1 - r**2) * (ham.W @ r / ham.beta + ham.bias + ham.B @ u)
    )
    np.testing.assert_allclose(ham.potential_grad(phi, u), expected, rtol=1e-12)


def test_hamiltonian_formula():
    """H = Δ[½‖π‖² + (α/2)‖φ‖² + (1/2β) ρᵀWρ + bᵀρ + uᵀBᵀρ]."""
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    ham = HopfieldHamiltonian(
        M=jax.random.normal(k[0], (N, N), jnp.float64),
        bias=jax.random.normal(k[1], (N,), jnp.float64),
        B=jax.random.normal(k[2], (N, H), jnp.float64),
        log_alpha=jnp.log(jnp.asarray(0.7)),
        log_beta=jnp.log(jnp.asarray(1.3)),
        log_step=jnp.log(jnp.asarray(0.2)),
    )
    phi, pi, u = random_inputs(1, (N,)), random_inputs(2, (N,)), random_inputs(3, (H,))
    r, W = jnp.tanh(phi), 0.5 * (ham.M + ham.M.T)
    expected = 0.2 * (
        0.5 * pi @ pi + 0.35 * phi @ phi + r @ W @ r / 2.6 + ham.bias @ r + u @ ham.B.T @ r
    )
    assert float(ham.energy(PhaseState(phi, pi), u)) == pytest.approx(float(expected), rel=1e-13)


def test_leapfrog_is_reversible():
    ham = _unit(step=0.4).hamiltonian
    state = PhaseState(random_inputs(1, (N,)), random_inputs(2, (N,)))
    u = random_inputs(3, (H,))
    new, record = leapfrog_step(ham, state, u)
    back, back_record = leapfrog_step(ham, PhaseState(new.phi, -new.pi), u)
    np.testing.assert_allclose(back.phi, state.phi, atol=1e-13)
    np.testing.assert_allclose(back.pi, -state.pi, atol=1e-13)
    np.testing.assert_allclose(back_record.phi_half, record.phi_half, atol=1e-13)


def test_sizes_and_errors():
    unit = HopfieldHRU(4, 128, 3, key=jax.random.PRNGKey(0))
    count = sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(unit, eqx.is_inexact_array)))
    assert count == hopfield_param_count(4, 128, 3) < 20_000
    assert unit(jnp.ones((5, 4))).shape == (5, 3)
    assert unit.input_dim == 4 and unit.state_dim == 128 and unit.output_dim == 3
    with pytest.raises(ValueError, match="inputs"):
        unit(jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="nonlinearity"):
        HopfieldHRU(4, 8, 3, nonlinearity="relu", key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="step"):
        HopfieldHRU(4, 8, 3, step=0.0, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="beta"):
        HopfieldHRU(4, 8, 3, beta=-1.0, key=jax.random.PRNGKey(0))
    switched = unit.with_gradient("rhel", epsilon=0.05)
    assert switched.gradient == "rhel" and switched.hamiltonian.M is unit.hamiltonian.M


# ------------------------------------------------------------------- training entry point


def _tiny(**changes):
    from rhel_lib.hopfield_train import load_hopfield_config

    settings = dict(
        pattern_length=4,
        delay=3,
        num_patterns=2,
        state_dim=6,
        batch_size=4,
        num_steps=4,
        eval_every=2,
        eval_size=8,
        eval_batch_size=8,
        cosine_batch_size=4,
        seeds=[0],
    )
    settings.update(changes)
    return load_hopfield_config("CopyPaste", "smoke", settings)


def test_shipped_configs_load():
    from rhel_lib.hopfield_train import PROFILES, TASKS, load_hopfield_config, published_results

    for task in TASKS:
        for profile in PROFILES:
            config = load_hopfield_config(task, profile)
            assert config.task == task
            if profile == "full":
                assert len(config.seeds) == 5 and 64 <= config.state_dim <= 128
    copy = published_results()["tasks"]["CopyPaste"]
    assert copy["rhel"] == {"mean": 99.36, "std": 0.02}
    assert copy["tbptt"]["mean"] == 55.44 and copy["eprop"]["mean"] == 77.77
    assert copy["bptt"]["mean"] == 99.46


def test_config_errors():
    from rhel_lib.hopfield_train import load_hopfield_config

    with pytest.raises(ValueError, match="did you mean 'state_dim'"):
        load_hopfield_config("CopyPaste", "smoke", {"state_dims": 4})
    with pytest.raises(ValueError, match="methods"):
        load_hopfield_config("CopyPaste", "smoke", {"methods": ["backprop"]})
    with pytest.raises(ValueError, match="multiple"):
        load_hopfield_config("CopyPaste", "smoke", {"pattern_length": 5, "num_patterns": 2})
    with pytest.raises(ValueError, match="profile"):
        load_hopfield_config("CopyPaste", "huge")


def test_training_runs_write_results_and_table(tmp_path):
    from rhel_lib.hopfield_train import format_table, results_table, run_many

    config = _tiny()
    results = run_many(
        config, profile="smoke", methods=["rhel"], output_dir=tmp_path, progress=False
    )
    for r in results:
        assert r["status"] == "finished" and not r["skipped"]
        assert 0.0 <= r["final_metric"] <= 1.0
        assert [c["step"] for c in r["cosine"]] == [0, 2, 4]
        saved = json.loads(open(r["result_file"]).read())
        assert saved["method"] == r["method"] and saved["seed"] == 0
        assert {"wall_time_s", "history", "cosine", "num_params"} <= set(saved)
    rhel = results[0]
    assert all(c["hamiltonian"] > 0.99 for c in rhel["cosine"])  # float32 echo ≈ BPTT
    again = run_many(config, profile="smoke", methods=["rhel"], output_dir=tmp_path, progress=False)
    assert again[0]["skipped"]
    rows = results_table(task="CopyPaste", profile="smoke", output_dir=tmp_path)
    by_method = {row["method"]: row for row in rows}
    assert by_method["rhel"]["n_seeds"] == 1 and by_method["bptt"]["n_seeds"] == 0
    assert by_method["rhel"]["cosine_hamiltonian"][0] > 0.99
    assert by_method["bptt"]["published_mean"] == 99.46
    text = format_table(rows)
    assert "truncated BPTT" in text and "99.36 ± 0.02" in text


def test_results_table_statistics():
    from rhel_lib.hopfield_train import results_table

    fake = [
        {"method": "bptt", "task": "CopyPaste", "status": "finished", "profile": "p",
         "seed": s, "final_metric": v, "cosine": [{"step": 0, "hamiltonian": 1.0}]}
        for s, v in enumerate([0.99, 0.97])
    ]  # fmt: skip
    row = next(r for r in results_table(fake, task="CopyPaste") if r["method"] == "bptt")
    assert row["mean"] == pytest.approx(98.0) and row["std"] == pytest.approx(1.0)
    assert row["cosine_hamiltonian"] == {0: 1.0}


def test_heidelberg_training_on_a_generated_processed_set(tmp_path):
    """The Heidelberg path on a tiny processed set in the real on-disk format."""
    from rhel_lib.data.store import save_processed
    from rhel_lib.hopfield_train import load_hopfield_config, train_hopfield

    rng = np.random.default_rng(0)
    n, frames, mels = 24, 10, 5
    arrays = {
        "X": rng.normal(size=(n, frames, mels)).astype(np.float32),
        "y": np.arange(n, dtype=np.int64) % 20,
        "lengths": rng.integers(3, frames + 1, size=n).astype(np.int64),
        "orig_train_idx": np.arange(16, dtype=np.int64),
        "orig_test_idx": np.arange(16, n, dtype=np.int64),
    }
    manifest = {"task": "classification", "n_classes": 20, "split": {"kind": "orig_test"}}
    save_processed("Heidelberg", "HeidelbergDigits", tmp_path / "data", arrays, manifest)
    config = load_hopfield_config(
        "HeidelbergDigits",
        "smoke",
        dict(state_dim=6, batch_size=4, num_steps=2, eval_every=1, eval_batch_size=8,
             cosine_steps=[], val_fraction=0.25),
    )  # fmt: skip
    result = train_hopfield(
        config,
        method="bptt",
        seed=0,
        profile="smoke",
        output_dir=tmp_path / "out",
        data_root=tmp_path / "data",
        progress=False,
    )
    assert result["status"] == "finished" and result["data"] == {"train": 12, "val": 4, "test": 8}
    assert 0.0 <= result["final_metric"] <= 1.0 and result["best_val"] is not None
    assert result["cosine"] == [] and len(result["history"]) == 2


def test_deprecated_cli_alias_forwards_to_the_shared_train_command(tmp_path, capsys):
    from rhel_lib.hopfield_train import main as alias_main
    from rhel_lib.results import read_result, run_dir

    tiny = dict(pattern_length=4, delay=3, state_dim=6, batch_size=4, num_steps=2,
                eval_every=2, eval_size=8, eval_batch_size=8, cosine_steps=[])  # fmt: skip
    args = ["run", "--task", "CopyPaste", "--profile", "smoke", "--methods", "rhel",
            "--seeds", "0", "--output-dir", str(tmp_path), "--no-progress",
            *[f"--override={k}={json.dumps(v)}" for k, v in tiny.items()]]  # fmt: skip
    assert alias_main(args) == 0
    captured = capsys.readouterr()
    assert "deprecated" in captured.err and "python -m rhel_lib train" in captured.err
    result = read_result(run_dir(tmp_path, "smoke", "HopfieldHRU", "CopyPaste", "rhel", 0))
    assert result["status"] == "finished" and result["steps"] == 2
    assert result["method"] == "rhel" and result["history"][-1]["step"] == 2
    row = f"| RHEL (generic echo) | {100 * result['final_metric']:.2f} ± 0.00 | 1 | 99.36 ± 0.02"
    assert row in captured.out
    assert alias_main(args) == 0  # finished: skipped
    assert "already finished, skipped" in capsys.readouterr().out
    assert alias_main(["table", "--output-dir", str(tmp_path), "--profile", "smoke"]) == 0
    assert row in capsys.readouterr().out


def test_training_refuses_a_run_folder_of_other_settings(tmp_path):
    from rhel_lib.hopfield_train import train_hopfield
    from rhel_lib.results import RunConflictError

    config = _tiny(num_steps=2, cosine_steps=[])
    run = dict(method="bptt", seed=0, profile="smoke", output_dir=tmp_path, progress=False)
    first = train_hopfield(config, **run)
    assert first["status"] == "finished" and first["steps"] == 2 and not first["skipped"]
    with pytest.raises(RunConflictError, match="different configuration"):
        train_hopfield(config.replace(lr=0.02), **run)
    assert train_hopfield(config, **run)["skipped"]
    again = train_hopfield(config, **run, restart=True)  # ran again, to the same numbers
    assert not again["skipped"] and again["final_metric"] == first["final_metric"]
    assert again["history"][-1]["train_loss"] == first["history"][-1]["train_loss"]
    with pytest.raises(ValueError, match="seed"):
        train_hopfield(config, **{**run, "seed": -1})


def test_has_profile_settings_tells_a_rerun_would_skip():
    from rhel_lib.hopfield_train import _run_hash, has_profile_settings, load_hopfield_config

    config = load_hopfield_config("CopyPaste", "cpu")
    result = dict(task="CopyPaste", profile="cpu", method="rhel", seed=3)
    result["run_hash"] = _run_hash(config, "rhel", 3, "cpu")
    assert has_profile_settings(result)
    assert not has_profile_settings({**result, "seed": 4})
    other = _run_hash(config.replace(lr=config.lr / 2), "rhel", 3, "cpu")
    assert not has_profile_settings({**result, "run_hash": other})


SHIPPED_CPU = Path(__file__).parents[1] / "data_dir" / "results" / "cpu" / "HopfieldHRU"


def test_shipped_cpu_results_are_those_of_the_cpu_profile():
    """The Copy-Paste table the book shows (chapter 7) comes from result files in the
    repository: all 5 methods x 5 seeds, finished, with the cpu profile's current settings
    (otherwise the documented command would refuse to rerun over them)."""
    from rhel_lib.hopfield_train import has_profile_settings, load_hopfield_config

    config = load_hopfield_config("CopyPaste", "cpu")
    files = sorted(SHIPPED_CPU.glob("CopyPaste/*/seed*/result.json"))
    results = [json.loads(f.read_text()) for f in files]
    assert {(r["method"], r["seed"]) for r in results} == {
        (m, s) for m in config.methods for s in config.seeds
    }
    for path, r in zip(files, results):
        assert r["status"] == "finished" and has_profile_settings(r), path
