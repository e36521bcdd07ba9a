"""The echo in the open (rhel_lib.explore): retrace, linear response, running estimate, the
non-reversible integrator's bias, and the explorer's grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, rel_error

from rhel_lib.echo import GradientConfig
from rhel_lib.explore import (
    EchoGrid,
    echo_grid,
    echo_scrubber,
    echo_trajectories,
    error_vs_epsilon,
    forward_run,
    make_non_reversible,
    make_unit_problem,
    nudge_size,
    plot_echo_frame,
    retrace_error,
    rhel_gradients,
    running_estimate,
    with_step,
)
from rhel_lib.toy import make_toy_task

K = 60


@pytest.fixture(scope="module")
def toy():
    """An anharmonic toy chain (so that the echoes respond nonlinearly) and its cotangent."""
    task = make_toy_task(num_oscillators=3, num_steps=K, step=0.3, anharmonicity=1.0, seed=2)
    _, record = forward_run(task.hamiltonian, task.inputs)
    return task, jax.grad(task.loss_fn)(record.phi_out)


def test_unnudged_echo_is_the_flipped_forward_run_reversed(toy):
    task, cotangent = toy
    run = echo_trajectories(task.hamiltonian, task.inputs, cotangent, epsilon=0.0)
    fwd, echo = run.forward, run.echoes
    for i in (0, 1):  # both echoes retrace
        np.testing.assert_allclose(echo.phi_half[i], fwd.phi_half[::-1], atol=1e-12)
        np.testing.assert_allclose(echo.pi_in[i], -fwd.pi_out[::-1], atol=1e-12)
        np.testing.assert_allclose(echo.pi_out[i], -fwd.pi_in[::-1], atol=1e-12)
        phi_before = jnp.concatenate([jnp.zeros((1, 3)), fwd.phi_out[:-1]])
        np.testing.assert_allclose(echo.phi_out[i], phi_before[::-1], atol=1e-12)


def test_echo_conventions_match_the_library(toy):
    """Start at (φ_K, −π_K); the kick before echo step j is σ ν g_{K−1−j}."""
    task, cotangent = toy
    run = echo_trajectories(task.hamiltonian, task.inputs, cotangent, epsilon=0.3)
    nu = nudge_size(cotangent, 0.3)
    assert float(run.nudge) == pytest.approx(0.3 / float(jnp.sum(jnp.abs(cotangent))))
    assert float(run.nudge) == pytest.approx(float(nu))
    kick = run.echoes.pi_in[:, 0] + run.final.pi  # momentum entering step 0 minus −π_K
    np.testing.assert_allclose(kick[0], nu * cotangent[-1], atol=1e-14)
    np.testing.assert_allclose(kick[1], -nu * cotangent[-1], atol=1e-14)


def test_echo_difference_is_linear_in_epsilon_for_small_epsilon(toy):
    task, cotangent = toy

    def difference(eps):
        run = echo_trajectories(task.hamiltonian, task.inputs, cotangent, epsilon=eps)
        return run.echoes.phi_out[0] - run.echoes.phi_out[1]

    d3, d4 = difference(1e-3), difference(1e-4)
    assert float(jnp.max(jnp.abs(d3))) > 0.0
    assert rel_error(d3 / 1e-3, d4 / 1e-4) < 1e-5  # centred: corrections are O(ε²)
    big = difference(1.0)
    assert rel_error(big / 1.0, d4 / 1e-4) > 1e-3  # and they are there at large ε


def test_running_estimate_ends_at_the_rhel_gradient(toy):
    task, cotangent = toy
    ham, inputs = task.hamiltonian, task.inputs
    for estimator in ("centred", "one-sided"):
        config = GradientConfig("rhel", epsilon=1e-2, estimator=estimator)
        run = echo_trajectories(ham, inputs, cotangent, epsilon=config.epsilon, estimator=estimator)
        running, grad_u = running_estimate(ham, inputs, run)
        last = jax.tree_util.tree_map(lambda x: x[-1], running)
        g, gu = rhel_gradients(ham, inputs, task.loss_fn, config)
        assert max(leaf_errors(last, g).values()) < 1e-9
        assert rel_error(grad_u, gu) < 1e-9
        assert running.coupling.shape == (K, 3, 3)


def test_running_estimate_of_the_linear_unit_equals_paired_echoes():
    ham, inputs, loss_fn = make_unit_problem("linear", step=0.4, num_steps=K, state_dim=4)
    _, record = forward_run(ham, inputs)
    cotangent = jax.grad(loss_fn)(record.phi_out)
    run = echo_trajectories(ham, inputs, cotangent, epsilon=0.5)
    running, _ = running_estimate(ham, inputs, run)
    last = jax.tree_util.tree_map(lambda x: x[-1], running)
    g, _ = rhel_gradients(ham, inputs, loss_fn, GradientConfig("rhel", epsilon=0.5))
    assert max(leaf_errors(last, g).values()) < 1e-10


def test_non_reversible_integrator_biases_rhel_and_reversible_converges():
    ham, inputs, loss_fn = make_unit_problem("nonlinear", step=0.1, num_steps=K, state_dim=4)
    broken = make_non_reversible(ham)
    eps = np.array([1e-2, 1e-3, 1e-4])
    good = np.asarray(
        error_vs_epsilon(ham, inputs, loss_fn, eps, GradientConfig("rhel"))["parameters"]
    )
    bad = np.asarray(
        error_vs_epsilon(broken, inputs, loss_fn, eps, GradientConfig("rhel"))["parameters"]
    )
    assert good[-1] < 1e-7 and good[0] > 10 * good[-1]  # converges as ε → 0
    assert bad.min() > 1e-3  # a plateau ...
    assert bad.max() / bad.min() < 1.1  # ... that ε does not move
    assert float(retrace_error(broken, inputs)["positions"]) > 1e-6
    assert float(retrace_error(ham, inputs)["positions"]) < 1e-13


def test_non_reversible_bias_grows_with_the_step():
    ham, inputs, loss_fn = make_unit_problem("nonlinear", step=0.1, num_steps=K, state_dim=4)
    eps = np.array([1e-2, 1e-3, 1e-4])
    plateau = [
        float(
            error_vs_epsilon(
                make_non_reversible(with_step(ham, dt)),
                inputs,
                loss_fn,
                eps,
                GradientConfig("rhel"),
            )["parameters"][-1]
        )
        for dt in (0.01, 0.1)
    ]
    assert plateau[1] > 3 * plateau[0]


def test_endpoint_energy_is_biased_half_step_energy_is_not():
    ham, inputs, loss_fn = make_unit_problem("nonlinear", step=0.2, num_steps=K, state_dim=4)
    eps = np.array([1e-2, 1e-3, 1e-4])
    config = GradientConfig("rhel")
    half = error_vs_epsilon(ham, inputs, loss_fn, eps, config)  # the library: H_1/2
    ends = error_vs_epsilon(ham, inputs, loss_fn, eps, config, energy="endpoints")
    assert float(half["parameters"][-1]) < 1e-7
    assert float(ends["parameters"][-1]) > 1e-4


def test_with_step_sets_the_step_of_every_kind():
    nonlinear, _, _ = make_unit_problem("nonlinear", step=0.1, num_steps=4)
    linear, _, _ = make_unit_problem("linear", step=0.1, num_steps=4)
    toy = make_toy_task(num_steps=4).hamiltonian
    assert float(with_step(nonlinear, 0.5).step) == pytest.approx(0.5)
    np.testing.assert_allclose(with_step(linear, 0.5).step, 0.5)
    assert float(with_step(make_non_reversible(nonlinear), 0.5).step) == pytest.approx(0.5)
    assert float(with_step(toy, 0.5).step) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def grid(toy):
    task, _ = toy
    return echo_grid(task, [1e-3, 1e-2, 1e-1], [0.2, 0.3], component=("B", (0, 1)))


def test_echo_grid_shapes_and_consistency(toy, grid):
    task, _ = toy
    assert isinstance(grid, EchoGrid)
    assert grid.forward.shape == (2, K + 1)
    assert grid.echoes.shape == (2, 3, 2, K + 1)
    assert grid.difference.shape == (2, 3, K + 1)
    assert grid.running.shape == (2, 3, K)
    assert grid.bptt.shape == (2,) and grid.loss.shape == (2,)
    assert grid.final_error.shape == (2, 3)
    assert grid.component == "B[0, 1]"
    # the running estimate ends on the BPTT value, with an error that shrinks with ε
    np.testing.assert_allclose(grid.running[:, 0, -1], grid.bptt, rtol=1e-4)
    assert np.all(np.diff(grid.final_error, axis=1) > 0)
    # the echoes start at the forward run's final position and, at small ε, retrace it
    start = np.broadcast_to(grid.forward[:, None, None, -1], (2, 3, 2))
    np.testing.assert_allclose(grid.echoes[:, :, :, -1], start)
    np.testing.assert_allclose(grid.echoes[1, 0, 0], grid.forward[1], atol=1e-3)
    # the grid at Δ = 0.3 is the task itself
    g, _ = task.gradients(GradientConfig("bptt"))
    assert grid.bptt[1] == pytest.approx(float(g.B[0, 1]), rel=1e-12)


def test_echo_grid_rejects_bad_grids(toy):
    task, _ = toy
    with pytest.raises(ValueError, match="epsilons"):
        echo_grid(task, [0.0, 0.1])
    with pytest.raises(ValueError, match="steps"):
        echo_grid(task, [0.1], steps=[])
    with pytest.raises(ValueError, match="estimator"):
        echo_grid(task, [0.1], estimator="forward")


def test_plot_echo_frame_draws_four_panels(grid):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_echo_frame(grid, 1, 2)
    assert len(fig.axes) == 4
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    plt.close(fig)


def test_echo_scrubber_is_a_self_contained_animation(grid):
    import matplotlib

    matplotlib.use("Agg")
    html = echo_scrubber(grid, over="step", index=0)
    assert html.count("data:image/png;base64") == len(grid.steps)
    assert "anim-slider" in html
    with pytest.raises(ValueError, match="over"):
        echo_scrubber(grid, over="length")
