"""Context windows, fuse weights, windowed execution, noise and FreeInit: pure properties."""

import itertools

import pytest
import torch

from samplers import (FUSE_METHODS, SCHEDULES, ContextError, ContextOptions, initial_noise, low_pass_mask,
                      mix_frequencies, reinitialised_noise, run_in_windows, window_batch_index)

CASES = list(itertools.product(SCHEDULES, (False, True), (1, 2, 4), (17, 24, 40, 64, 100)))


@pytest.mark.parametrize("schedule,closed_loop,stride,frames", CASES)
def test_every_frame_covered_at_every_step(schedule, closed_loop, stride, frames):
    options = ContextOptions(16, 4, stride, closed_loop, schedule)
    for step in range(6):
        windows = options.windows(frames, step)
        assert set(i for w in windows for i in w) == set(range(frames))
        for w in windows:
            assert 1 <= len(w) <= 16 and len(set(w)) == len(w) and all(0 <= i < frames for i in w)


def test_static_windows_are_the_expected_ones():
    assert ContextOptions(16, 4).windows(40) == [list(range(0, 16)), list(range(12, 28)), list(range(24, 40))]
    assert ContextOptions(16, 4).windows(16) == [list(range(16))]
    assert ContextOptions(16, 0, schedule="batched").windows(40) == [list(range(0, 16)), list(range(16, 32)),
                                                                   list(range(32, 40))]


def test_closed_loop_wraps_around():
    windows = ContextOptions(16, 4, closed_loop=True).windows(40)
    assert any(w[0] > w[-1] for w in windows)  # a window runs from the end into the start
    looped = ContextOptions(16, 4, closed_loop=True, schedule="looped_uniform")
    assert any(any(b < a for a, b in zip(w, w[1:])) for s in range(4) for w in looped.windows(40, s))


def test_uniform_windows_move_between_steps():
    options = ContextOptions(16, 4, schedule="standard_uniform")
    assert options.windows(64, 0) != options.windows(64, 1)
    assert options.windows(64, 3) == options.windows(64, 3)  # deterministic


@pytest.mark.parametrize("method", FUSE_METHODS)
def test_fuse_weights_positive_and_normalised(method):
    options = ContextOptions(16, 4, fuse_method=method)
    frames = 40
    total = torch.zeros(frames)
    for w in options.windows(frames):
        weights = options.weights(w, frames)
        assert weights.shape == (len(w),) and (weights > 0).all()
        total[w] += weights
    # Fusing a constant signal gives the constant back: the normalisation is exact.
    x = torch.full((2 * frames, 3), 0.7)
    out = run_in_windows(lambda xw, idx: xw.clone(), x, 2, options, step=0)
    assert torch.allclose(out, x, atol=1e-6)


def test_pyramid_weights():
    assert ContextOptions().weights(list(range(6)), 20).tolist() == [1, 2, 3, 3, 2, 1]


@pytest.mark.parametrize("kwargs,message", [
    (dict(context_length=16, overlap=16), "overlap .16. must be .* smaller than context_length"),
    (dict(context_length=8, overlap=9), "smaller than context_length"),
    (dict(stride=3), "power of two"),
    (dict(schedule="zigzag"), "unknown schedule 'zigzag'"),
    (dict(fuse_method="max"), "unknown fuse method 'max'"),
])
def test_bad_options_explained(kwargs, message):
    with pytest.raises(ContextError, match=message):
        ContextOptions(**kwargs)


def test_one_window_is_bit_identical():
    x = torch.randn(2 * 16, 4, 3, 3)
    calls = []

    def call(xw, idx):
        calls.append(xw.shape[0])
        return xw * 3.0 + 1.0
    out = run_in_windows(call, x, 2, ContextOptions(16, 4), step=0)
    assert calls == [32] and torch.equal(out, x * 3.0 + 1.0)


def test_windows_keep_cond_and_uncond_apart_and_aligned():
    """Each call holds the same window of every chunk, chunk-major, and results land back in place."""
    frames, chunks = 40, 2
    x = torch.arange(chunks * frames, dtype=torch.float32).view(-1, 1)
    seen = []

    def call(xw, idx):
        seen.append(idx.clone())
        half = len(idx) // chunks
        assert torch.equal(idx[half:] - frames, idx[:half])  # same frames in both chunks
        return xw * 2

    out = run_in_windows(call, x, chunks, ContextOptions(16, 4), step=0)
    assert torch.allclose(out, x * 2)
    assert all(len(i) == 32 for i in seen)
    assert window_batch_index([3, 4], 10, 2).tolist() == [3, 4, 13, 14]


def test_windowed_result_depends_on_window_contents():
    """A call that mixes frames (like temporal attention) gives per-window results, blended by weight."""
    options = ContextOptions(4, 2, fuse_method="flat")
    x = torch.arange(6, dtype=torch.float32).view(6, 1)
    out = run_in_windows(lambda xw, idx: xw.mean().expand_as(xw), x, 1, options, step=0)
    # windows [0..3] mean 1.5, [2..5] mean 3.5; frames 2,3 average both
    assert out.view(-1).tolist() == [1.5, 1.5, 2.5, 2.5, 3.5, 3.5]


def test_noise_types():
    shape = (24, 4, 8, 8)
    default = initial_noise(shape, 5)
    assert torch.equal(default, torch.randn(shape, generator=torch.manual_seed(5)))  # = ComfyUI's prepare_noise
    per_frame = initial_noise(shape, 5, seed_mode="seed + frame index")
    assert torch.equal(per_frame[3], torch.randn(shape[1:], generator=torch.manual_seed(8)))
    assert torch.equal(initial_noise((30,) + shape[1:], 5, seed_mode="seed + frame index")[:24], per_frame)
    constant = initial_noise(shape, 5, "constant")
    assert all(torch.equal(constant[i], constant[0]) for i in range(24))
    repeated = initial_noise(shape, 5, "repeated_context", context_length=8)
    assert torch.equal(repeated[8:16], repeated[:8]) and torch.equal(repeated[16:], repeated[:8])
    free = initial_noise(shape, 5, "FreeNoise", context_length=8, overlap=4)
    assert torch.equal(free[:8], repeated[:8])
    first = {tuple(f.flatten()[:4].tolist()) for f in free[:8]}
    later = [tuple(f.flatten()[:4].tolist()) for f in free[8:]]
    assert all(t in first for t in later)  # reused, not new
    assert not torch.equal(free[8:16], free[:8])  # but shuffled
    assert torch.equal(free, initial_noise(shape, 5, "FreeNoise", context_length=8, overlap=4))


def test_freeinit_filter_and_mix():
    mask = low_pass_mask(16, 8, 8, "gaussian", 0.25, 0.25)
    assert mask.shape == (16, 8, 8) and mask.max() <= 1 and mask.min() >= 0
    assert mask[8, 4, 4] == pytest.approx(1.0)  # zero frequency sits at the centre after fftshift
    butter = low_pass_mask(16, 8, 8, "butterworth", 0.25, 0.25)
    assert butter[8, 4, 4] == pytest.approx(1.0) and butter[0, 0, 0] < 0.01
    a, b = torch.randn(16, 4, 8, 8), torch.randn(16, 4, 8, 8)
    assert torch.allclose(mix_frequencies(a, b, torch.ones(16, 8, 8)), a, atol=1e-5)
    assert torch.allclose(mix_frequencies(a, b, torch.zeros(16, 8, 8)), b, atol=1e-5)
    # A constant (DC-only) z0 passes the low-pass unchanged into the next noise.
    z0 = torch.full((16, 4, 8, 8), 2.0)
    zero = torch.zeros_like(z0)
    noise = reinitialised_noise(z0, zero, zero, zero, 10.0, mask)
    assert torch.allclose(noise, z0 / 10.0, atol=1e-5)
