"""Hamiltonian state-space models (HSSMs): an encoder, a stack of blocks, a head.

Each block is ``BatchNorm → Hamiltonian unit → GELU → dropout → GLU → dropout → + residual``. The
units' backward passes are their RHEL echoes (or autodiff); everything around them is ordinary
autodiff, so the cotangent that reaches a unit's outputs is exactly the one its echo needs — the
chaining of RHEL through a stack comes for free.

Models act on batches ``x`` of shape ``(batch, length, data_dim)`` and thread an
``eqx.nn.State`` holding the BatchNorm running statistics::

    model, state = make_model("LinHRU", data_dim=6, label_dim=4, hidden_dim=64, num_blocks=2,
                              ssm_dim=16, classification=True, gradient="rhel", epsilon=0.1,
                              key=jax.random.key(0))
    logits, state = model(x, state, key=key)                       # training mode
    logits, _ = model(x, state, inference=True)                    # evaluation
    bptt_model = set_gradient(model, "bptt")                       # same parameters
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from rhel_lib._validation import (
    check_choice,
    check_finite,
    check_last_dim,
    check_positive_int,
)
from rhel_lib.echo import GRADIENT_METHODS
from rhel_lib.units import HamiltonianUnit, LinHRU, NonlinHRU
from rhel_lib.units.base import uniform

MODEL_NAMES = ("LinHRU", "NonlinHRU")


class Dense(eqx.Module):
    """Affine map on the last axis, ``x @ Wᵀ + b`` with ``W, b ~ U(±1/√in)``."""

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"]

    def __init__(self, in_features: int, out_features: int, *, dtype, key: PRNGKeyArray):
        k_w, k_b = jax.random.split(key)
        bound = in_features**-0.5
        self.weight = uniform(k_w, (out_features, in_features), bound, dtype)
        self.bias = uniform(k_b, (out_features,), bound, dtype)

    def __call__(self, x: Float[Array, "... in"]) -> Float[Array, "... out"]:
        return x @ self.weight.T + self.bias


class BatchNorm(eqx.Module):
    """Batch normalisation over ``(batch, time)`` per channel, running statistics in the state."""

    weight: Float[Array, " H"]
    bias: Float[Array, " H"]
    statistics: eqx.nn.StateIndex
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, channels: int, *, momentum: float = 0.99, eps: float = 1e-5, dtype):
        self.weight = jnp.ones((channels,), dtype)
        self.bias = jnp.zeros((channels,), dtype)
        self.statistics = eqx.nn.StateIndex(
            (jnp.zeros((channels,), dtype), jnp.ones((channels,), dtype))
        )
        self.momentum = momentum
        self.eps = eps

    def __call__(
        self, x: Float[Array, "B L H"], state: eqx.nn.State, *, inference: bool
    ) -> tuple[Float[Array, "B L H"], eqx.nn.State]:
        if inference:
            mean, var = state.get(self.statistics)
        else:
            mean, var = jnp.mean(x, axis=(0, 1)), jnp.var(x, axis=(0, 1))
            old_mean, old_var = state.get(self.statistics)
            m = self.momentum
            running = (m * old_mean + (1 - m) * mean, m * old_var + (1 - m) * var)
            state = state.set(self.statistics, jax.lax.stop_gradient(running))
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.weight + self.bias, state


class GLU(eqx.Module):
    """Gated linear unit ``W₁x ⊙ σ(W₂x)`` on the last axis."""

    linear: Dense

    def __init__(self, channels: int, *, dtype, key: PRNGKeyArray):
        self.linear = Dense(channels, 2 * channels, dtype=dtype, key=key)

    def __call__(self, x: Float[Array, "... H"]) -> Float[Array, "... H"]:
        value, gate = jnp.split(self.linear(x), 2, axis=-1)
        return value * jax.nn.sigmoid(gate)


def dropout(x: Array, rate: float, key: PRNGKeyArray | None, inference: bool) -> Array:
    """Inverted dropout; identity in inference mode or at rate 0.

    The rate is quantised to a multiple of 2⁻¹⁶ (0.05 → 3277/65536); the kept values are
    divided by the exact keep probability, so the layer stays unbiased.
    """
    if inference or rate == 0.0:
        return x
    drop_below = round(rate * 2**16)
    keep_probability = 1.0 - drop_below / 2**16
    return jnp.where(_uniform16(key, x.shape) >= drop_below, x / keep_probability, 0.0)


def _uniform16(key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
    """Independent uniform 16-bit integers (as uint32), two per 32-bit random word.

    ``jax.random.bernoulli`` draws 32 bits per element and its generator needs about three
    times the output in temporaries; over a long sequence these buffers dominated a training
    step (110 of 490 MiB at B = 4, L = 16k, H = 64). Splitting each word halves them.
    """
    size = math.prod(shape)
    words = jax.random.bits(key, ((size + 1) // 2,), dtype=jnp.uint32)
    halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(-1)
    return halves[:size].reshape(shape)


class HSSMBlock(eqx.Module):
    """``x + dropout(GLU(dropout(GELU(unit(BatchNorm(x))))))`` on ``(batch, length, H)``."""

    norm: BatchNorm
    unit: HamiltonianUnit
    glu: GLU
    dropout_rate: float = eqx.field(static=True)

    def __init__(self, unit: HamiltonianUnit, *, dropout_rate: float, dtype, key: PRNGKeyArray):
        channels = unit.input_dim
        self.norm = BatchNorm(channels, dtype=dtype)
        self.unit = unit
        self.glu = GLU(channels, dtype=dtype, key=key)
        self.dropout_rate = dropout_rate

    def __call__(self, x, state, *, key, inference):
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        y, state = self.norm(x, state, inference=inference)
        y = jax.nn.gelu(jax.vmap(self.unit)(y))
        y = dropout(y, self.dropout_rate, k1, inference)
        y = dropout(self.glu(y), self.dropout_rate, k2, inference)
        return x + y, state


class HSSM(eqx.Module):
    """Encoder → blocks → head. Classification: mean over time → linear (logits; the softmax is in
    the loss). Regression: every ``output_step``-th step → linear → tanh."""

    encoder: Dense
    blocks: tuple[HSSMBlock, ...]
    head: Dense
    data_dim: int = eqx.field(static=True)
    classification: bool = eqx.field(static=True)
    output_step: int = eqx.field(static=True)
    include_time: bool = eqx.field(static=True)

    def __init__(
        self,
        units: list[HamiltonianUnit],
        *,
        data_dim: int,
        label_dim: int,
        classification: bool,
        output_step: int = 1,
        include_time: bool = False,
        dropout_rate: float = 0.05,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        hidden = units[0].input_dim
        k_enc, k_head, *k_blocks = jax.random.split(key, 2 + len(units))
        self.encoder = Dense(data_dim + int(include_time), hidden, dtype=dtype, key=k_enc)
        self.blocks = tuple(
            HSSMBlock(u, dropout_rate=dropout_rate, dtype=dtype, key=k)
            for u, k in zip(units, k_blocks)
        )
        self.head = Dense(hidden, label_dim, dtype=dtype, key=k_head)
        self.data_dim = data_dim
        self.classification = classification
        self.output_step = output_step
        self.include_time = include_time

    def __call__(
        self,
        x: Float[Array, "B L D"],
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
    ) -> tuple[Float[Array, "B C"] | Float[Array, "B T C"], eqx.nn.State]:
        """Logits ``(B, label_dim)`` (classification) or predictions ``(B, L // output_step,
        label_dim)`` (regression), and the updated state."""
        if x.ndim != 3:
            raise ValueError(
                f"x must have shape (batch, length, data_dim={self.data_dim}); got {tuple(x.shape)}"
            )
        check_last_dim("x", x, self.data_dim, "the model's data_dim")
        check_finite("x", x)
        if key is None and not inference and any(b.dropout_rate > 0 for b in self.blocks):
            raise ValueError("key is required in training mode (dropout); or pass inference=True")
        if self.include_time:
            time = jnp.linspace(0.0, 1.0, x.shape[1], dtype=x.dtype)
            x = jnp.concatenate([x, jnp.broadcast_to(time[None, :, None], x.shape[:2] + (1,))], -1)
        h = self.encoder(x)
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        for block, k in zip(self.blocks, keys):
            h, state = block(h, state, key=k, inference=inference)
        if self.classification:
            return self.head(jnp.mean(h, axis=1)), state
        if h.shape[1] < self.output_step:
            raise ValueError(
                f"sequence length {h.shape[1]} is shorter than output_step={self.output_step}"
            )
        return jnp.tanh(self.head(h[:, self.output_step - 1 :: self.output_step])), state

    @property
    def units(self) -> tuple[HamiltonianUnit, ...]:
        """The Hamiltonian unit of each block, bottom to top."""
        return tuple(b.unit for b in self.blocks)


def make_model(
    name: str,
    *,
    data_dim: int,
    label_dim: int,
    hidden_dim: int,
    num_blocks: int,
    ssm_dim: int,
    classification: bool,
    gradient: str = "bptt",
    epsilon: float = 0.1,
    key: PRNGKeyArray,
    output_step: int = 1,
    include_time: bool = False,
    loss_scale: float | str = "auto",
    estimator: str = "centred",
    chunk_size: int | None = None,
    complex_ssm: bool = True,
    train_step: bool | None = None,
    step: float | tuple[float, float] | None = None,
    parallel: bool = True,
    dropout_rate: float = 0.05,
    dtype=jnp.float32,
) -> tuple[HSSM, eqx.nn.State]:
    """Build an HSSM and its initial state.

    Args:
        name: ``"LinHRU"`` or ``"NonlinHRU"``.
        data_dim: input channels (without the optional time channel).
        label_dim: classes (classification) or regression targets.
        hidden_dim: ``H``, channels between blocks.
        num_blocks: number of blocks.
        ssm_dim: ``P``, oscillators per unit.
        classification: classification head (else regression).
        gradient: ``"bptt"`` or ``"rhel"`` for every unit; see :func:`set_gradient`.
        epsilon, loss_scale, estimator: RHEL settings, see
            :class:`~rhel_lib.echo.GradientConfig`.
        chunk_size: steps per chunk of the forward pass and the echo; ``None`` takes each unit's
            default (LinHRU 1024 — parallel scan inside a chunk; NonlinHRU 64).
        key: PRNG key.
        output_step: regression predicts every ``output_step``-th step.
        include_time: append a time channel ``t ∈ [0, 1]`` to the input.
        complex_ssm, parallel: LinHRU options (complex ``B, C``; parallel scan).
        train_step: whether ``Δ`` is trained (default: LinHRU yes, NonlinHRU no).
        step: initial ``Δ``: LinHRU a value or range in ``(0, 1)`` (default ``sigmoid(U(0,1))``);
            NonlinHRU a value ``> 0`` (default ``1e-4``).
        dropout_rate: dropout after GELU and GLU.
        dtype: parameter dtype.
    """
    check_choice("model name", name, MODEL_NAMES)
    check_choice("gradient", gradient, GRADIENT_METHODS)
    for arg, value in [
        ("data_dim", data_dim),
        ("label_dim", label_dim),
        ("hidden_dim", hidden_dim),
        ("num_blocks", num_blocks),
        ("ssm_dim", ssm_dim),
        ("output_step", output_step),
    ]:
        check_positive_int(arg, value)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must lie in [0, 1); got {dropout_rate!r}")
    common = dict(
        gradient=gradient,
        epsilon=epsilon,
        loss_scale=loss_scale,
        estimator=estimator,
        dtype=dtype,
    )
    if chunk_size is not None:
        common["chunk_size"] = chunk_size
    unit_keys = jax.random.split(jax.random.fold_in(key, 1), num_blocks)
    if name == "LinHRU":
        units = [
            LinHRU(
                hidden_dim,
                ssm_dim,
                complex_ssm=complex_ssm,
                train_step=True if train_step is None else train_step,
                step=step,
                parallel=parallel,
                key=k,
                **common,
            )
            for k in unit_keys
        ]
    else:
        units = [
            NonlinHRU(
                hidden_dim,
                ssm_dim,
                step=1e-4 if step is None else step,
                train_step=False if train_step is None else train_step,
                key=k,
                **common,
            )
            for k in unit_keys
        ]
    return eqx.nn.make_with_state(HSSM)(
        units,
        data_dim=data_dim,
        label_dim=label_dim,
        classification=classification,
        output_step=output_step,
        include_time=include_time,
        dropout_rate=dropout_rate,
        dtype=dtype,
        key=jax.random.fold_in(key, 2),
    )


def set_gradient(
    model: eqx.Module,
    gradient: str | None,
    epsilon: float | None = None,
    *,
    loss_scale: float | None = None,
    estimator: str | None = None,
    chunk_size: int | None = None,
    paired_echoes: bool | None = None,
) -> eqx.Module:
    """The same model (same parameter arrays) with every Hamiltonian unit switched to
    ``gradient`` (``"bptt"``/``"rhel"``; ``None`` keeps each unit's) and the given RHEL settings
    (``None`` keeps the current value)."""
    if gradient is not None:
        check_choice("gradient", gradient, GRADIENT_METHODS)

    def switch(node):
        if isinstance(node, HamiltonianUnit):
            return node.with_gradient(
                gradient,
                epsilon=epsilon,
                loss_scale=loss_scale,
                estimator=estimator,
                chunk_size=chunk_size,
                paired_echoes=paired_echoes,
            )
        return node

    return jax.tree_util.tree_map(switch, model, is_leaf=lambda x: isinstance(x, HamiltonianUnit))


def cross_entropy(logits: Float[Array, "B C"], labels: Int[Array, " B"]) -> Float[Array, ""]:
    """Mean softmax cross-entropy of integer ``labels``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def mean_squared_error(pred: Float[Array, "..."], target: Float[Array, "..."]) -> Float[Array, ""]:
    """Mean squared error."""
    return jnp.mean((pred - target) ** 2)


def model_loss(
    model: HSSM,
    state: eqx.nn.State,
    x: Float[Array, "B L D"],
    y: Array,
    *,
    key: PRNGKeyArray | None = None,
    inference: bool = False,
) -> tuple[Float[Array, ""], tuple[eqx.nn.State, Array]]:
    """Cross-entropy (classification, integer labels) or MSE (regression) of ``model`` on a batch;
    returns ``(loss, (new_state, outputs))`` — ready for ``eqx.filter_value_and_grad(...,
    has_aux=True)``."""
    out, state = model(x, state, key=key, inference=inference)
    if model.classification:
        loss = cross_entropy(out, y)
    else:
        loss = mean_squared_error(out, y)
    return loss, (state, out)
