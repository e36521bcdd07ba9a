"""Fig. 4 comparison: RHEL vs BPTT per block and parameter, and its figure; plot style."""

import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from rhel_lib.data import load_processed, process_uea  # noqa: E402
from rhel_lib.gradcheck import compare_gradients, plot_gradient_comparison  # noqa: E402
from rhel_lib.models import make_model  # noqa: E402
from rhel_lib.plotting import METHOD_COLORS, PALETTE, method_color, method_label  # noqa: E402

LIN_LABELS = {"A", "Δ", "B (re)", "B (im)", "C (re)", "C (im)", "D"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    process_uea("BasicMotions", root)
    ds = load_processed("UEA", "BasicMotions", root)
    return ds.X[3], int(ds.y[3])  # float32 (100, 6), class id


def _model(name, **kw):
    return make_model(
        name,
        data_dim=6,
        label_dim=4,
        hidden_dim=8,
        num_blocks=2,
        ssm_dim=4,
        classification=True,
        dtype=jnp.float32,
        key=jax.random.key(0),
        **kw,
    )


@pytest.fixture(scope="module")
def lin_table(sample):
    model, state = _model("LinHRU", parallel=False)
    x, y = sample
    return compare_gradients(model, state, x, y, epsilon=0.1, loss_scale=1e4)


def test_linhru_rhel_matches_bptt_in_float32(lin_table):
    table = lin_table
    units = [r for r in table if r["component"] == "unit"]
    assert {r["block"] for r in units} == {0, 1}
    for block in (0, 1):
        assert {r["label"] for r in units if r["block"] == block} == LIN_LABELS
    assert {r["module"] for r in table} == {"encoder", "block 0", "block 1", "head"}
    for row in table:  # every parameter array, not only the units'
        assert not row["frozen"] and row["bptt_norm"] > 0
        assert row["cosine"] > 0.999, row
        assert math.isfinite(row["norm_ratio"]) and abs(row["norm_ratio"] - 1) < 1e-3, row
    assert all(r["size"] > 0 and r["path"].startswith(".") for r in table)


def test_nonlinear_unit_and_frozen_step(sample):
    """NonlinHRU with a moderate step: the centred echo is accurate at ε = 0.1, γ = auto. Its
    Δ is frozen by default: both gradients are zero, the row is marked and has no cosine."""
    x, y = sample
    model, state = _model("NonlinHRU", step=0.05)
    table = compare_gradients(model, state, x[None], np.array([y]), epsilon=0.1, loss_scale="auto")
    frozen = [r for r in table if r["frozen"]]
    assert [(r["block"], r["label"]) for r in frozen] == [(0, "Δ"), (1, "Δ")]
    assert all(math.isnan(r["cosine"]) and math.isnan(r["norm_ratio"]) for r in frozen)
    live = [r for r in table if not r["frozen"]]
    assert {r["label"] for r in live if r["block"] == 0 and r["component"] == "unit"} == {
        "W", "c", "α", "b", "B", "C", "D"
    }  # fmt: skip
    assert min(r["cosine"] for r in live) > 0.999
    assert max(abs(r["norm_ratio"] - 1) for r in live) < 1e-2


def test_figure_has_two_labelled_panels(lin_table):
    import matplotlib.pyplot as plt

    fig = plot_gradient_comparison(lin_table, title="LinHRU")
    axes = fig.axes
    assert len(axes) == 2
    assert "cosine" in axes[0].get_ylabel().lower()
    assert "norm ratio" in axes[1].get_ylabel().lower()
    assert all(ax.get_xlabel() == "parameter" for ax in axes)
    ticks = {t.get_text() for t in axes[0].get_xticklabels()}
    assert ticks == LIN_LABELS
    bars = [p for p in axes[0].patches if p.get_height() > 0]
    assert len(bars) == 2 * len(LIN_LABELS)  # one bar per block × parameter
    legend_texts = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert legend_texts == {"block 0", "block 1"}
    everything = plot_gradient_comparison(lin_table, units_only=False)
    assert len(everything.axes[0].get_xticklabels()) > len(LIN_LABELS)
    plt.close("all")


def test_method_colours_are_fixed():
    assert method_color("RHEL") == METHOD_COLORS["rhel"] != method_color("bptt")
    assert method_color("e-prop") == METHOD_COLORS["eprop"]
    assert method_color("something else") == PALETTE[7]
    assert method_label("rhel") == "RHEL" and method_label("truncated_bptt") == "truncated BPTT"


def test_batch_and_input_gradient_in_float64():
    """A batch (B = 3) in float64 with the input gradient: RHEL = BPTT to round-off for the
    linear unit, and the input row's BPTT side is autodiff's gradient with respect to x."""
    import equinox as eqx

    from rhel_lib.models import model_loss, set_gradient

    model, state = make_model(
        "LinHRU", data_dim=3, label_dim=2, hidden_dim=4, num_blocks=2, ssm_dim=3,
        classification=True, dtype=jnp.float64, parallel=False, key=jax.random.key(1),
    )  # fmt: skip
    x = jax.random.normal(jax.random.key(2), (3, 40, 3), jnp.float64)
    y = jnp.array([0, 1, 1])
    key = jax.random.key(5)
    table = compare_gradients(
        model, state, x, y, epsilon=0.1, loss_scale="auto", key=key, input_gradient=True
    )
    assert table[-1]["module"] == table[-1]["path"] == "input x"
    assert table[-1]["size"] == x.size
    assert max(row["rel_error"] for row in table) < 1e-12
    assert all(row["bptt_norm"] > 0 for row in table)

    def loss(inputs, state):
        return model_loss(set_gradient(model, "bptt"), state, inputs, y, key=key)[0]

    expected = float(jnp.linalg.norm(jax.jit(jax.grad(loss))(x, state)))
    assert table[-1]["bptt_norm"] == pytest.approx(expected, rel=1e-12)
    assert not any(r["path"] == "input x" for r in compare_gradients(model, state, x, y, key=key))
    with pytest.raises(ValueError, match="labels"):
        compare_gradients(model, state, x, y[:2])
    with pytest.raises(ValueError, match="one sequence"):
        compare_gradients(model, state, x[0, 0], y[0])
    assert eqx.tree_equal(model, model)  # the model is not modified
