import math

import numpy as np
import pytest
import torch

from ddtse.audio.spectral import SpecConfig, SpectralTransform, channels_to_complex, complex_to_channels


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
@pytest.mark.parametrize("transform", ["exponent", "log"])
def test_round_trip_exact(sr, transform, assets):
    from ddtse.audio.io import load_audio

    wav = torch.from_numpy(load_audio(assets / "arctic_a0009_female.wav", sr))[: sr * 2]
    batch = torch.stack([wav, 0.5 * wav.flip(0), torch.zeros_like(wav)])  # includes silence
    st = SpectralTransform(SpecConfig.for_rate(sr, transform=transform))
    spec = st(batch)
    back = st.inverse(spec, batch.shape[-1])
    assert back.shape == batch.shape
    assert (back - batch).abs().max().item() < 1e-5


def test_reference_settings_at_16k():
    c = SpecConfig.for_rate(16000)
    assert (c.n_fft, c.hop_length, c.alpha, c.beta, c.n_bins) == (510, 128, 0.5, 0.15, 256)
    assert SpecConfig.for_rate(8000).n_bins % 64 == 0 and SpecConfig.for_rate(44100).n_bins % 64 == 0


def test_stft_matches_definition():
    """Periodic Hann, centred with reflect padding, not normalised: check one bin by hand."""
    st = SpectralTransform(SpecConfig())
    x = torch.randn(4000, dtype=torch.float32)
    spec = st.stft(x)
    n_fft, hop = 510, 128
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(n_fft) / n_fft)  # periodic
    padded = torch.nn.functional.pad(x[None, None], (n_fft // 2, n_fft // 2), mode="reflect")[0, 0]
    frame = 5
    seg = padded[frame * hop : frame * hop + n_fft] * window
    k = 37
    expected = (seg.double() * torch.exp(-2j * math.pi * k * torch.arange(n_fft) / n_fft)).sum()
    assert abs(spec[k, frame].item() - expected.item()) < 1e-3


def test_compression_formula():
    st = SpectralTransform(SpecConfig())
    z = torch.tensor([4.0 + 0j, -9.0 + 0j, 1j * 16.0])
    c = st.compress(z)
    assert torch.allclose(c.abs(), 0.15 * torch.tensor([2.0, 3.0, 4.0]))
    assert torch.allclose(c / c.abs(), z / z.abs(), atol=1e-6)  # phase kept
    assert torch.allclose(st.decompress(c), z, atol=1e-5)
    log = SpectralTransform(SpecConfig(transform="log")).compress(torch.tensor([math.e - 1 + 0j]))
    assert abs(log.abs().item() - 0.15) < 1e-6


def test_pad_and_crop_frames():
    st = SpectralTransform(SpecConfig())
    spec = st(torch.randn(2, 16000))  # 126 frames
    padded, frames = st.pad_frames(spec)
    assert frames == 126 and padded.shape[-1] == 128 and padded[..., 126:].abs().sum() == 0
    assert torch.equal(st.crop_frames(padded, frames), spec)


def test_channel_packing_round_trip():
    z = torch.randn(2, 2, 8, 5, dtype=torch.complex64)
    x = complex_to_channels(z)
    assert x.shape == (2, 4, 8, 5)
    assert torch.equal(x[:, 0], z[:, 0].real) and torch.equal(x[:, 1], z[:, 0].imag)
    assert torch.equal(channels_to_complex(x), z)


def test_module_moves_with_device_and_batches_any_leading_dims():
    st = SpectralTransform(SpecConfig.for_rate(8000)).to(torch.float32)
    x = torch.randn(2, 3, 2000)
    s = st(x)
    assert s.shape[:2] == (2, 3)
    np.testing.assert_allclose(st.inverse(s, 2000).numpy(), x.numpy(), atol=1e-5)
