"""Chunked overlap-add (ddtse/audio/chunking.py): weights sum to 1, equivalence with whole-file runs, no clicks."""
import numpy as np
import pytest
import torch

from ddtse.audio.chunking import chunk_starts, crossfade_ramp, overlap_add
from ddtse.errors import DdtseError


def identity(batch):
    return batch[:, 0].clone()


@pytest.mark.parametrize("total,chunk,overlap,bs", [(1000, 128, 32, 1), (1001, 100, 50, 3), (777, 64, 0, 2), (5000, 999, 333, 4)])
def test_identity_is_exact(total, chunk, overlap, bs):
    x = torch.randn(1, total)
    y = overlap_add(identity, x, chunk, overlap, batch_size=bs)
    assert y.shape == (total,)
    assert torch.allclose(y, x[0], atol=1e-6)


def test_ramps_are_complementary():
    ramp = crossfade_ramp(17)
    assert torch.all(ramp > 0) and torch.all(ramp < 1)
    assert torch.allclose(ramp + ramp.flip(0), torch.ones(17), atol=1e-6)  # symmetric Hann half-windows
    starts = chunk_starts(1000, 100, 20)
    assert starts[0] == 0 and starts[-1] + 100 >= 1000 and all(b - a == 80 for a, b in zip(starts, starts[1:]))


def test_short_input_processed_whole():
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return batch[:, 0] * 2

    x = torch.randn(2, 50)
    y = overlap_add(fn, x, 100, 10)
    assert calls == [(1, 2, 50)] and torch.allclose(y, 2 * x[0])


def test_conv_stack_matches_whole_file():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    ).eval()
    fn = lambda b: net(b)[:, 0]  # noqa: E731  receptive field 17 samples, far inside the overlap
    x = torch.randn(1, 3000)
    with torch.no_grad():
        whole = fn(x[None])[0]
    chunked = overlap_add(fn, x, 400, 100, batch_size=2)
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_no_clicks_with_a_chunk_dependent_gain():
    # each chunk gets a different gain: the crossfade must keep the output smooth (no steps)
    t = torch.arange(20000) / 8000.0
    x = torch.sin(2 * np.pi * 220 * t)[None]
    gains = []

    def fn(b):
        g = torch.tensor([1.0 + 0.1 * (len(gains) + i) for i in range(b.shape[0])])
        gains.extend(g.tolist())
        return b[:, 0] * g[:, None]

    y = overlap_add(fn, x, 2000, 500)
    step = torch.diff(y).abs().max()
    assert step < max(gains) * torch.diff(x[0]).abs().max() * 1.02
    hard = overlap_add(lambda b: b[:, 0] * 2 ** torch.arange(b.shape[0])[:, None], torch.ones(1, 4000), 2000, 500, batch_size=2)
    assert torch.diff(hard).abs().max() < 0.01  # a unit step between chunks is spread over 500 samples


def test_progress_and_bad_arguments(capsys):
    x = torch.randn(1, 1000)
    overlap_add(identity, x, 100, 10, progress=True)
    with pytest.raises(DdtseError, match="overlap"):
        overlap_add(identity, x, 100, 100)
    with pytest.raises(DdtseError, match=r"\(B, L\)"):
        overlap_add(lambda b: b, x, 100, 10)


def test_dptnet_through_overlap_add():
    from ddtse.models.dptnet import DPTNet

    torch.manual_seed(0)
    model = DPTNet(n=8, e=16, k=6, d=1, heads=2, lstm_hidden=4, window=8).eval()
    x = torch.randn(1, 1234)
    y = overlap_add(lambda b: model(b), x, 500, 100, batch_size=2)
    assert y.shape == (1234,) and torch.isfinite(y).all()
