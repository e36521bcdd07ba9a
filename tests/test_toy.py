"""The toy chain of coupled oscillators: RHEL equals BPTT (float64), task shapes, arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, rel_error

from rhel_lib.echo import GradientConfig, integrate
from rhel_lib.hamiltonian import PhaseState
from rhel_lib.toy import CoupledOscillators, TrackingLoss, chain_stiffness, make_toy_task

K, N, H = 80, 3, 2


@pytest.fixture(scope="module")
def task():
    return make_toy_task(num_oscillators=N, input_dim=H, num_steps=K, step=0.3, seed=3)


def _errors(task, config):
    (g, gu), (g_ref, gu_ref) = task.gradients(config), task.gradients(GradientConfig("bptt"))
    errors = leaf_errors(g, g_ref)
    errors["inputs"] = rel_error(gu, gu_ref)
    return errors


def test_harmonic_chain_rhel_is_exact_at_large_epsilon(task):
    """β = 0: the leapfrog is affine and ∂_θH quadratic, so the centred echo is exact."""
    for eps in (1e-3, 0.5):
        errors = _errors(task, GradientConfig("rhel", epsilon=eps))
        assert max(errors.values()) < 1e-10, (eps, errors)


def test_anharmonic_chain_rhel_converges_to_bptt(task):
    nonlinear = task.replace(anharmonicity=1.0)
    errors = _errors(nonlinear, GradientConfig("rhel", epsilon=1e-4))
    assert max(errors.values()) < 1e-6, errors
    coarse = _errors(nonlinear, GradientConfig("rhel", epsilon=1e-2))
    assert coarse["inputs"] > 10 * errors["inputs"]  # the bias is real, and shrinks with ε


def test_frozen_constants_get_no_gradient(task):
    g, _ = task.gradients(GradientConfig("bptt"))
    assert float(jnp.abs(g.step)) == 0.0 and float(jnp.abs(g.anharmonicity)) == 0.0
    assert float(jnp.max(jnp.abs(g.coupling))) > 0.0


def test_task_shapes_and_loss(task):
    assert task.inputs.shape == (K, H)
    assert task.target.shape == (K,)
    assert task.hamiltonian.coupling.shape == (N, N)
    assert task.hamiltonian.B.shape == (N, H)
    positions = integrate(task.hamiltonian, task.inputs, GradientConfig("bptt"))
    assert positions.shape == (K, N)
    loss = task.loss()
    assert loss.shape == () and float(loss) > 0.0
    expected = 0.5 * np.mean(
        (np.asarray(positions[:, task.observed]) - np.asarray(task.target)) ** 2
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-12)
    short = task.first(20)
    assert short.inputs.shape == (20, H) and short.target.shape == (20,)
    assert float(short.hamiltonian.step) == pytest.approx(0.3)


def test_target_is_reachable_by_a_teacher():
    """The target is the observed oscillator of another chain of the same kind."""
    task = make_toy_task(num_steps=50, seed=1)
    assert float(jnp.std(task.target)) > 0.05
    assert task.inputs.dtype == task.target.dtype == jnp.float64  # x64 is on in the tests


def test_replace_changes_only_the_constants(task):
    other = task.replace(step=0.1, anharmonicity=0.5)
    assert float(other.hamiltonian.step) == pytest.approx(0.1)
    assert float(other.hamiltonian.anharmonicity) == pytest.approx(0.5)
    np.testing.assert_array_equal(other.hamiltonian.coupling, task.hamiltonian.coupling)
    np.testing.assert_array_equal(other.inputs, task.inputs)


def test_chain_stiffness_is_symmetric_positive_definite():
    J = chain_stiffness(jnp.array([0.7, 1.0, 1.3, 0.9]), 0.4)
    np.testing.assert_allclose(J, J.T)
    assert float(jnp.min(jnp.linalg.eigvalsh(J))) > 0.0
    # ½ φᵀJφ = ½ Σ ω²φ² + ½ κ Σ (φ_i − φ_{i+1})²
    phi = jnp.array([0.3, -1.2, 0.5, 2.0])
    springs = 0.5 * 0.4 * jnp.sum(jnp.diff(phi) ** 2)
    onsite = 0.5 * jnp.sum(jnp.array([0.7, 1.0, 1.3, 0.9]) ** 2 * phi**2)
    assert float(0.5 * phi @ J @ phi) == pytest.approx(float(onsite + springs))


def test_energy_is_even_in_the_momenta(task):
    ham = task.hamiltonian.with_constants(anharmonicity=1.0)
    key = jax.random.split(jax.random.PRNGKey(0), 3)
    phi, pi, u = (jax.random.normal(k, s) for k, s in zip(key, [(N,), (N,), (H,)]))
    assert float(ham.energy(PhaseState(phi, pi), u)) == pytest.approx(
        float(ham.energy(PhaseState(phi, -pi), u))
    )
    assert isinstance(ham, CoupledOscillators)


def test_tracking_loss_observes_one_oscillator():
    loss = TrackingLoss(jnp.zeros(4), observed=1)
    positions = jnp.zeros((4, 3)).at[:, 1].set(2.0).at[:, 0].set(5.0)
    assert float(loss(positions)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(num_oscillators=0), ValueError),
        (dict(num_steps=2.5), TypeError),
        (dict(step=0.0), ValueError),
        (dict(anharmonicity=-1.0), ValueError),
        (dict(observed=4), ValueError),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error):
    with pytest.raises(error):
        make_toy_task(**kwargs)


def test_first_cannot_lengthen(task):
    with pytest.raises(ValueError, match="steps"):
        task.first(K + 1)
