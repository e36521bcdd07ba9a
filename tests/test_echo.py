"""The generic RHEL echo: any Hamiltonian written by a user gets BPTT-exact gradients."""

import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, random_inputs, rel_error, slope

from rhel_lib.echo import GradientConfig, integrate
from rhel_lib.hamiltonian import Hamiltonian


class QuarticChain(Hamiltonian):
    """A Hamiltonian written only for this test: coupled anharmonic oscillators (a dense,
    symmetric coupling and a quartic term), to show that the echo needs nothing but ``H``."""

    coupling: jax.Array  # (Q, Q), symmetrised in use
    quartic: jax.Array  # (Q,)
    mass: jax.Array  # (Q,)
    B: jax.Array  # (Q, H)
    step: float = eqx.field(static=True)

    @property
    def state_dim(self):
        return self.quartic.shape[0]

    def kinetic(self, pi):
        return self.step * 0.5 * jnp.sum(pi**2 / jax.nn.softplus(self.mass))

    def potential(self, phi, u):
        K = 0.5 * (self.coupling + self.coupling.T)
        return self.step * (
            0.5 * phi @ K @ phi + 0.25 * jnp.sum(self.quartic**2 * phi**4) - phi @ (self.B @ u)
        )


def _quartic(seed=0, Q=5, H=3, step=0.2):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    coupling = jnp.eye(Q) + 0.1 * jax.random.normal(k[0], (Q, Q))
    return QuarticChain(
        coupling,
        jax.random.uniform(k[1], (Q,)),
        jax.random.normal(k[2], (Q,)),
        jax.random.normal(k[3], (Q, H)) / np.sqrt(H),
        step,
    )


def _grads(ham, u, target, config):
    def loss(ham, u):
        return jnp.mean((integrate(ham, u, config) - target) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(ham, u)


@pytest.fixture(scope="module")
def quartic_case():
    ham, K = _quartic(), 150
    u, target = random_inputs(1, (K, 3)), random_inputs(2, (K, 5))
    return ham, u, target, _grads(ham, u, target, GradientConfig("bptt"))


def test_user_hamiltonian_gets_exact_gradients(quartic_case):
    ham, u, target, (g_ref, gu_ref) = quartic_case
    g, gu = _grads(ham, u, target, GradientConfig("rhel", epsilon=1e-4))
    assert max(leaf_errors(g, g_ref).values()) < 1e-6
    assert rel_error(gu, gu_ref) < 1e-6


def test_centred_error_falls_as_eps_squared_one_sided_as_eps(quartic_case):
    ham, u, target, (g_ref, _) = quartic_case
    eps = np.array([0.2, 0.1, 0.05])
    errors = {}
    for estimator in ("centred", "one-sided"):
        errors[estimator] = [
            max(
                leaf_errors(
                    _grads(
                        ham,
                        u,
                        target,
                        GradientConfig("rhel", epsilon=float(e), estimator=estimator),
                    )[0],
                    g_ref,
                ).values()
            )
            for e in eps
        ]
    assert 1.7 < slope(eps, errors["centred"]) < 2.3
    assert 0.8 < slope(eps, errors["one-sided"]) < 1.2
    assert errors["centred"][-1] < errors["one-sided"][-1]


def test_chunk_size_does_not_change_the_estimate(quartic_case):
    ham, u, target, _ = quartic_case
    results = [
        _grads(ham, u, target, GradientConfig("rhel", epsilon=1e-3, chunk_size=c))
        for c in (None, 64, 7, 1)
    ]
    for g, gu in results[1:]:  # only the summation order differs: round-off / nudge size
        assert max(leaf_errors(g, results[0][0]).values()) < 1e-9
        assert rel_error(gu, results[0][1]) < 1e-9


def test_loss_scale_multiplies_the_nudge_and_divides_the_estimate(quartic_case):
    """(ε, γ) and (εγ, 1) are the same estimator."""
    ham, u, target, _ = quartic_case
    a = _grads(ham, u, target, GradientConfig("rhel", epsilon=0.01, loss_scale=1e3))
    b = _grads(ham, u, target, GradientConfig("rhel", epsilon=10.0, loss_scale=1.0))
    assert max(leaf_errors(a[0], b[0]).values()) < 1e-10
    c = _grads(ham, u, target, GradientConfig("rhel", epsilon=0.01, loss_scale=1.0))
    assert max(leaf_errors(c[0], a[0]).values()) > 1e-6  # the nudge really changed


def _all_shapes(jaxpr) -> set[tuple[int, ...]]:
    """Shapes of every intermediate of a jaxpr, sub-jaxprs (scan bodies, custom rules) included."""
    shapes = set()
    for eqn in jaxpr.eqns:
        shapes.update(tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            shapes |= _all_shapes(sub)
    return shapes


def test_no_per_step_parameter_gradient_tensor():
    """The backward pass never holds an array with both the time axis and a parameter's
    (P, H) shape: parameter gradients are reductions over time."""
    P, H, K = 6, 5, 96
    from rhel_lib.units import LinHRU, NonlinHRU

    for unit in (
        LinHRU(H, P, gradient="rhel", chunk_size=32, dtype=jnp.float32, key=jax.random.PRNGKey(0)),
        NonlinHRU(
            H,
            P,
            gradient="rhel",
            chunk_size=32,
            step=0.1,
            dtype=jnp.float32,
            key=jax.random.PRNGKey(0),
        ),
    ):
        u = jnp.ones((K, H), jnp.float32)
        jaxpr = jax.make_jaxpr(eqx.filter_grad(lambda m, u=u: jnp.sum(m(u) ** 2)))(unit)
        shapes = _all_shapes(jaxpr.jaxpr)
        offending = [s for s in shapes if len(s) >= 3 and s[-2:] in ((P, H), (2 * P, H))]
        assert not offending, offending


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(method="backprop"), ValueError),
        (dict(method="rhel", epsilon=0.0), ValueError),
        (dict(method="rhel", epsilon=-1.0), ValueError),
        (dict(method="rhel", epsilon=float("nan")), ValueError),
        (dict(method="rhel", epsilon="0.1"), TypeError),
        (dict(method="rhel", loss_scale=0.0), ValueError),
        (dict(method="rhel", estimator="forward"), ValueError),
        (dict(method="rhel", chunk_size=0), ValueError),
        (dict(method="rhel", chunk_size=2.5), TypeError),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs, error):
    name = next(k for k in kwargs if k != "method") if len(kwargs) > 1 else "gradient"
    name = {"method": "gradient"}.get(name, name)
    with pytest.raises(error, match=name):
        GradientConfig(**kwargs)


def test_estimator_aliases():
    assert GradientConfig("rhel", estimator="centered").estimator == "centred"
    assert GradientConfig("rhel", estimator="one_sided").estimator == "one-sided"
