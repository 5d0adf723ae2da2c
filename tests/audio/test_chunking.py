"""Chunked overlap-add (ddtse/audio/chunking.py): weights sum to 1, equivalence with whole-file runs, no clicks."""
import numpy as np
import pytest
import torch

from ddtse.audio.chunking import chunk_starts, chunk_windows, crossfade_ramp, overlap_add
from ddtse.errors import DdtseError


def identity(batch):
    return batch[:, 0].clone()


@pytest.mark.parametrize("total,chunk,overlap,bs", [(1000, 128, 32, 1), (1001, 100, 50, 3), (777, 64, 0, 2), (5000, 999, 333, 4)])
def test_identity_is_exact(total, chunk, overlap, bs):
    x = torch.randn(1, total)
    y = overlap_add(identity, x, chunk, overlap, batch_size=bs)
    assert y.shape == (total,)
    assert torch.allclose(y, x[0], atol=1e-6)


@pytest.mark.parametrize("chunk,overlap", [(100, 20), (100, 50), (100, 80), (64, 63)])
def test_windows_sum_to_one_with_zero_edges(chunk, overlap):
    win = chunk_windows(chunk, overlap)
    hop = chunk - overlap
    total = torch.zeros(hop * 6 + chunk)
    kinds = ["first"] + ["middle"] * 5 + ["last"]
    for i, kind in enumerate(kinds):
        total[i * hop : i * hop + chunk] += win[kind]
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    edge = overlap // 4
    if edge:
        assert win["middle"][:edge].eq(0).all() and win["middle"][-edge:].eq(0).all()
    ramp = crossfade_ramp(17)
    assert torch.allclose(ramp + ramp.flip(0), torch.ones(17), atol=1e-6) and torch.all(torch.diff(ramp) > 0)
    starts = chunk_starts(1000, chunk, overlap)
    assert starts[0] == 0 and starts[-1] + chunk >= 1000 and starts[-2] + chunk < 1000


def test_short_input_processed_whole():
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return batch[:, 0] * 2

    x = torch.randn(2, 50)
    y = overlap_add(fn, x, 100, 10)
    assert calls == [(1, 2, 50)] and torch.allclose(y, 2 * x[0])


def conv_stack(bias):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4, bias=bias), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4, bias=bias)
    ).eval()


@pytest.mark.parametrize("chunk,overlap,bs", [(400, 100, 2), (300, 200, 1), (256, 64, 3)])
def test_conv_stack_matches_whole_file(chunk, overlap, bs):
    # receptive field: 8 samples on each side <= overlap // 4
    x = torch.randn(1, 3001)
    for bias in (False, True):
        net = conv_stack(bias)
        fn = lambda b: net(b)[:, 0]  # noqa: E731
        with torch.no_grad():
            whole = fn(x[None])[0]
        exact = overlap_add(fn, x, chunk, overlap, batch_size=bs, pad_last=False)
        assert torch.allclose(exact, whole, atol=1e-5)
        padded = overlap_add(fn, x, chunk, overlap, batch_size=bs)  # zero-padded final chunk
        assert torch.allclose(padded[:-8], whole[:-8], atol=1e-5)  # differs only within the field of the end


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
        overlap_add(lambda b: b[:, 0, :-1], x, 100, 10)


def test_dptnet_through_overlap_add():
    from ddtse.models.dptnet import DPTNet

    torch.manual_seed(0)
    model = DPTNet(n=8, e=16, k=6, d=1, heads=2, lstm_hidden=4, window=8).eval()
    x = torch.randn(1, 1234)
    y = overlap_add(lambda b: model(b), x, 500, 100, batch_size=2)
    assert y.shape == (1234,) and torch.isfinite(y).all()
