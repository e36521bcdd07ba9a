"""Copy-Paste task: layout, determinism, recall-window mask, loss and bit accuracy."""

import math

import numpy as np
import pytest

from rhel_lib.tasks import CopyPaste, bit_accuracy, copy_paste_batch, copy_paste_loss


def test_default_lengths_and_shapes():
    task = CopyPaste()
    assert task.length == 400 and task.num_bits == 3
    batch = copy_paste_batch(task, 5, seed=0)
    assert batch.inputs.shape == (5, 400, 4) and batch.inputs.dtype == np.float32
    assert batch.targets.shape == (5, 400, 3) and batch.mask.shape == (400,)
    assert batch.patterns.shape == (5, task.num_patterns, 3)
    custom = CopyPaste(num_bits=2, num_patterns=3, pattern_length=6, delay=0, cue_length=2)
    assert custom.length == 14 and custom.hold == 2 and custom.input_dim == 3
    assert copy_paste_batch(custom, 2, seed=1).inputs.shape == (2, 14, 3)


def test_layout_by_hand():
    task = CopyPaste(num_bits=3, num_patterns=2, pattern_length=4, delay=3, cue_length=1)
    b = copy_paste_batch(task, 1, rng=np.random.default_rng(0))
    p = b.patterns[0]  # (2, 3) in {0, 1}
    x, y = b.inputs[0], b.targets[0]
    shown = np.concatenate([np.repeat(p[:1], 2, 0), np.repeat(p[1:], 2, 0)])  # 4 steps
    np.testing.assert_array_equal(x[:4, :3], 2 * shown - 1)  # ±1 on the pattern channels
    np.testing.assert_array_equal(x[4:, :3], 0)  # nothing after the presentation
    np.testing.assert_array_equal(x[:, 3], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])  # cue at 7
    np.testing.assert_array_equal(y[8:], shown)  # recall: the same patterns, same order
    np.testing.assert_array_equal(y[:8], 0)
    np.testing.assert_array_equal(b.mask, [0] * 8 + [1] * 4)
    assert task.recall_start == 8


def test_recall_mask():
    task = CopyPaste(pattern_length=10, num_patterns=5, delay=7, cue_length=3)
    mask = task.recall_mask()
    assert mask.sum() == 10 and mask[-10:].all() and not mask[:-10].any()


def test_determinism():
    task = CopyPaste(pattern_length=8, delay=5)
    a = copy_paste_batch(task, 16, seed=3, split="train", index=7)
    b = copy_paste_batch(task, 16, seed=3, split="train", index=7)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.targets, b.targets)
    for other in (
        copy_paste_batch(task, 16, seed=3, split="train", index=8),
        copy_paste_batch(task, 16, seed=4, split="train", index=7),
        copy_paste_batch(task, 16, seed=3, split="test", index=7),
    ):
        assert not np.array_equal(a.patterns, other.patterns)
    g1, g2 = np.random.default_rng(11), np.random.default_rng(11)
    np.testing.assert_array_equal(
        copy_paste_batch(task, 4, g1).inputs, copy_paste_batch(task, 4, g2).inputs
    )
    bits = copy_paste_batch(task, 4000, seed=0).patterns
    assert abs(bits.mean() - 0.5) < 0.02  # fair random bits


def test_bit_accuracy_on_hand_made_cases():
    mask = np.array([0, 0, 1, 1], np.float32)
    targets = np.array([[[0, 0], [1, 1], [1, 0], [0, 1]]], np.float32)  # (1, 4, 2)
    perfect = np.where(targets > 0.5, 3.0, -3.0)
    assert float(bit_accuracy(perfect, targets, mask)) == 1.0
    assert float(bit_accuracy(-perfect, targets, mask)) == 0.0
    outside_wrong = perfect.copy()
    outside_wrong[0, :2] *= -1  # errors outside the recall window do not count
    assert float(bit_accuracy(outside_wrong, targets, mask)) == 1.0
    one_wrong = perfect.copy()
    one_wrong[0, 3, 1] *= -1  # 1 of the 4 recall bits wrong
    assert float(bit_accuracy(one_wrong, targets, mask)) == 0.75
    zeros = np.zeros_like(targets)  # logit 0 predicts 0: right on the two 0-bits of the window
    assert float(bit_accuracy(zeros, targets, mask)) == 0.5


def test_chance_level_and_loss():
    task = CopyPaste(pattern_length=20, delay=10)
    b = copy_paste_batch(task, 256, seed=0)
    rng = np.random.default_rng(1)
    random_logits = rng.normal(size=b.targets.shape)
    assert abs(float(bit_accuracy(random_logits, b.targets, b.mask)) - 0.5) < 0.02
    zero = np.zeros_like(b.targets)
    assert float(copy_paste_loss(zero, b.targets, b.mask)) == pytest.approx(math.log(2), rel=1e-6)
    confident = np.where(b.targets > 0.5, 20.0, -20.0)
    assert float(copy_paste_loss(confident, b.targets, b.mask)) < 1e-8
    wrong_outside = confident.copy()
    wrong_outside[:, : task.recall_start] *= -1
    assert float(copy_paste_loss(wrong_outside, b.targets, b.mask)) < 1e-8


def test_bad_settings():
    with pytest.raises(ValueError, match="multiple"):
        CopyPaste(num_patterns=3, pattern_length=10)
    with pytest.raises(ValueError, match="delay"):
        CopyPaste(delay=-1)
    with pytest.raises(ValueError, match="num_bits"):
        CopyPaste(num_bits=0)
    with pytest.raises(ValueError, match="seed"):
        copy_paste_batch(CopyPaste(), 2)
    with pytest.raises(ValueError, match="split"):
        copy_paste_batch(CopyPaste(), 2, seed=0, split="validation")
