"""HSSMs: RHEL chained through blocks equals BPTT; make_model / set_gradient; errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_cosines, leaf_errors, random_inputs, rel_error

from rhel_lib.models import make_model, model_loss, set_gradient
from rhel_lib.units import HamiltonianUnit

B, L, D = 3, 120, 3


def _model(name, *, classification, dtype=jnp.float64, seed=0, **kwargs):
    defaults = dict(
        data_dim=D,
        label_dim=4,
        hidden_dim=6,
        num_blocks=3,
        ssm_dim=5,
        classification=classification,
        gradient="rhel",
        epsilon=1e-4,
        include_time=True,
        output_step=10,
        dtype=dtype,
        key=jax.random.PRNGKey(seed),
    )
    return make_model(name, **{**defaults, **kwargs})


def _data(classification, dtype=jnp.float64, length=L):
    x = random_inputs(11, (B, length, D), dtype)
    if classification:
        return x, jnp.array([0, 3, 1])
    return x, jax.random.uniform(jax.random.PRNGKey(12), (B, length // 10, 4), dtype, -0.5, 0.5)


@eqx.filter_jit
def _grads(model, state, x, y):
    def loss(model, x):
        return model_loss(model, state, x, y, inference=True)[0]

    return jax.grad(loss, argnums=(0, 1))(model, x)


CASES = [
    ("LinHRU", True, {}),
    ("LinHRU", False, {"complex_ssm": False, "parallel": False}),
    ("NonlinHRU", True, {"step": 0.3, "train_step": True}),
    ("NonlinHRU", False, {"step": 0.1}),
]


@pytest.mark.parametrize("name, classification, kwargs", CASES)
def test_rhel_through_a_stack_equals_bptt(name, classification, kwargs):
    model, state = _model(name, classification=classification, **kwargs)
    x, y = _data(classification)
    g, gx = _grads(model, state, x, y)
    g_ref, gx_ref = _grads(set_gradient(model, "bptt"), state, x, y)
    errors = leaf_errors(g, g_ref)
    errors["x"] = rel_error(gx, gx_ref)
    bound = 1e-10 if name == "LinHRU" else 1e-6
    assert max(errors.values()) < bound, errors
    # the gradients are not trivially zero, bottom block included
    assert (
        float(
            jnp.linalg.norm(
                g_ref.blocks[0].unit.hamiltonian.B_real
                if name == "LinHRU"
                else g_ref.blocks[0].unit.hamiltonian.B
            )
        )
        > 0
    )


@pytest.mark.parametrize("name", ["LinHRU", "NonlinHRU"])
def test_float32_paper_settings(name):
    """ε = 0.1 with a fixed γ = 10³ (the paper's 10⁴ over-nudges this small batch) and with the
    automatic γ: cosine ≥ 0.999 for every leaf in float32."""
    kwargs = {"step": 0.1} if name == "NonlinHRU" else {"parallel": False}
    model, state = _model(
        name,
        classification=True,
        dtype=jnp.float32,
        num_blocks=2,
        epsilon=0.1,
        loss_scale=1e3,
        **kwargs,
    )
    x, y = _data(True, jnp.float32, length=400)
    g_ref, _ = _grads(set_gradient(model, "bptt"), state, x, y)
    for loss_scale in (1e3, "auto"):
        g, _ = _grads(set_gradient(model, "rhel", 0.1, loss_scale=loss_scale), state, x, y)
        cosines = leaf_cosines(g, g_ref)
        assert min(cosines.values()) >= 0.999, (loss_scale, cosines)


def test_set_gradient_switches_every_unit_and_keeps_parameters():
    model, state = _model("LinHRU", classification=True, parallel=False)
    switched = set_gradient(model, "bptt")
    assert {u.gradient for u in model.units} == {"rhel"}
    assert {u.gradient for u in switched.units} == {"bptt"}
    for a, b in zip(jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(switched)):
        assert a is b
    tuned = set_gradient(model, None, 0.5, loss_scale=100.0, estimator="one-sided")
    assert all(
        u.gradient == "rhel"
        and u.gradient_config.epsilon == 0.5
        and u.gradient_config.loss_scale == 100.0
        and u.gradient_config.estimator == "one-sided"
        for u in tuned.units
    )
    x, _ = _data(True)
    np.testing.assert_array_equal(
        model(x, state, inference=True)[0], switched(x, state, inference=True)[0]
    )
    with pytest.raises(ValueError, match="gradient"):
        set_gradient(model, "e-prop")
    with pytest.raises(ValueError, match="epsilon"):
        set_gradient(model, "rhel", 0.0)


def test_model_structure_and_outputs():
    model, state = _model("NonlinHRU", classification=False, num_blocks=2, dtype=jnp.float32)
    assert len(model.blocks) == 2 and all(isinstance(u, HamiltonianUnit) for u in model.units)
    assert model.encoder.weight.shape == (6, D + 1)  # time channel
    x, y = _data(False, jnp.float32)

    def fresh():  # an eqx.nn.State is single-use outside jit: work on copies
        return jax.tree_util.tree_map(lambda a: a, state)

    out, new_state = model(x, fresh(), key=jax.random.PRNGKey(0))
    assert out.shape == y.shape and out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out))) <= 1.0  # tanh head
    # training mode updates the BatchNorm running statistics, inference mode does not
    before = fresh().get(model.blocks[0].norm.statistics)[0]
    after = new_state.get(model.blocks[0].norm.statistics)[0]
    assert float(jnp.max(jnp.abs(after - before))) > 0
    _, same = model(x, fresh(), inference=True)
    np.testing.assert_array_equal(same.get(model.blocks[0].norm.statistics)[0], before)
    # dropout is random in training, off in inference
    a, _ = model(x, fresh(), key=jax.random.PRNGKey(1))
    b, _ = model(x, fresh(), key=jax.random.PRNGKey(2))
    assert float(jnp.max(jnp.abs(a - b))) > 0
    c, _ = model(x, fresh(), inference=True)
    d, _ = model(x, fresh(), inference=True)
    np.testing.assert_array_equal(c, d)


def test_classification_loss_decreases_under_a_few_rhel_steps():
    import optax

    model, state = _model(
        "LinHRU", classification=True, dtype=jnp.float32, num_blocks=2, epsilon=0.1
    )
    x, y = _data(True, jnp.float32)
    opt = optax.adam(1e-2)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, state, opt_state):
        (loss, (state, _)), grads = eqx.filter_value_and_grad(model_loss, has_aux=True)(
            model, state, x, y, inference=True
        )
        updates, opt_state = opt.update(grads, opt_state)
        return eqx.apply_updates(model, updates), state, opt_state, loss

    losses = []
    for _ in range(30):
        model, state, opt_state, loss = step(model, state, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name="GRU"), ValueError, "model name"),
        (dict(gradient="eprop"), ValueError, "gradient"),
        (dict(epsilon=0.0), ValueError, "epsilon"),
        (dict(epsilon=-0.1), ValueError, "epsilon"),
        (dict(hidden_dim=0), ValueError, "hidden_dim"),
        (dict(num_blocks=1.5), TypeError, "num_blocks"),
        (dict(estimator="sideways"), ValueError, "estimator"),
        (dict(loss_scale=-1.0), ValueError, "loss_scale"),
        (dict(dropout_rate=1.0), ValueError, "dropout_rate"),
    ],
)
def test_make_model_errors(kwargs, error, match):
    args = dict(
        name="LinHRU",
        data_dim=2,
        label_dim=2,
        hidden_dim=4,
        num_blocks=1,
        ssm_dim=2,
        classification=True,
        key=jax.random.PRNGKey(0),
    )
    args.update(kwargs)
    name = args.pop("name")
    with pytest.raises(error, match=match):
        make_model(name, **args)


def test_call_errors():
    model, state = _model(
        "LinHRU", classification=True, dtype=jnp.float32, num_blocks=1, parallel=False
    )
    x, _ = _data(True, jnp.float32)
    with pytest.raises(ValueError, match="data_dim"):
        model(x[..., :2], state, inference=True)
    with pytest.raises(ValueError, match="batch, length"):
        model(x[0], state, inference=True)
    with pytest.raises(ValueError, match="NaN"):
        model(x.at[0, 0, 0].set(jnp.inf), state, inference=True)
    with pytest.raises(ValueError, match="key"):
        model(x, state)


def test_dropout_keeps_the_right_fraction_and_is_unbiased():
    from rhel_lib.models import _uniform16, dropout

    x = jnp.ones((8, 5000, 16), jnp.float32)  # 640k elements
    key = jax.random.key(3)
    y = dropout(x, 0.05, key, inference=False)
    kept = np.asarray(y != 0)
    # binomial standard deviation of the kept fraction: sqrt(0.05 * 0.95 / 640k) = 2.7e-4
    assert abs(kept.mean() - (1 - 3277 / 2**16)) < 2e-3
    assert abs(float(y.mean()) - 1.0) < 3e-3  # unbiased
    np.testing.assert_array_equal(np.asarray(dropout(x, 0.05, key, inference=False)), y)
    assert not np.array_equal(np.asarray(dropout(x, 0.05, jax.random.key(4), False)), y)
    np.testing.assert_array_equal(np.asarray(dropout(x, 0.05, key, inference=True)), x)
    # both 16-bit halves of each random word are uniform and independent of each other
    u = np.asarray(_uniform16(key, (100001,)), np.float64) / 2**16
    for half in (u[0::2], u[1::2]):
        assert abs(half.mean() - 0.5) < 5e-3 and abs(half.var() - 1 / 12) < 3e-3
    assert abs(np.corrcoef(u[0:-1:2], u[1::2])[0, 1]) < 1e-2
    assert u.max() < 1.0 and u.min() >= 0.0
