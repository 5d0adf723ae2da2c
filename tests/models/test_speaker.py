"""Speaker clues: the spectral enrollment encoder and the pre-computed embedding passthrough."""
from __future__ import annotations

import pytest
import torch

from ddtse.errors import DdtseError
from ddtse.models.speaker import PrecomputedEmbedding, SpectralSpeakerEncoder, masked_mean_std, mel_filterbank
from ddtse.registry import MODELS


pytestmark = pytest.mark.usefixtures("one_thread")


def small_encoder(**overrides) -> SpectralSpeakerEncoder:
    torch.manual_seed(0)
    cfg = {"name": "spectral_speaker_encoder", "emb_dim": 48, "channels": 32, "layers": 3, **overrides}
    return MODELS.build(cfg).eval()


@pytest.mark.parametrize("feature,pooling", [("logmel", "mean_std"), ("logmag", "mean")])
def test_encoder_shape_and_gradient(feature, pooling):
    enc = small_encoder(feature=feature, pooling=pooling).train()
    wav = torch.randn(3, 16000, requires_grad=True)
    emb = enc(wav, torch.tensor([16000, 12000, 4000]))
    assert emb.shape == (3, 48) and enc.output_dim == 48 and enc.uses_enrollment
    emb.square().sum().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad[:, :3000].abs().sum() > 0


def test_padding_does_not_change_the_embedding():
    enc = small_encoder()
    torch.manual_seed(1)
    short, other = torch.randn(7000), torch.randn(16000)
    alone = enc(short[None], torch.tensor([7000]))
    for pad in (torch.zeros(9000), 5.0 * torch.randn(9000)):  # zeros or garbage after the end
        batch = torch.stack([torch.cat([short, pad]), other])
        emb = enc(batch, torch.tensor([7000, 16000]))
        torch.testing.assert_close(emb[0], alone[0], rtol=1e-5, atol=1e-5)
    # and the garbage does matter when it is declared valid
    assert not torch.allclose(enc(batch[:1], torch.tensor([16000]))[0], alone[0], atol=1e-3)


def test_masked_pooling_ignores_masked_frames():
    x = torch.tensor([[[1.0, 3.0, 100.0, -50.0]]])
    mean, std = masked_mean_std(x, torch.tensor([[True, True, False, False]]), eps=0.0)
    torch.testing.assert_close(mean, torch.tensor([[2.0]]))
    torch.testing.assert_close(std, torch.tensor([[1.0]]))


def test_short_and_unpadded_enrollments():
    enc = small_encoder()
    assert enc(torch.randn(2, 300)).shape == (2, 48)  # shorter than one frame: one zero-padded frame
    tiny_clip = torch.randn(1, 300)
    padded = torch.cat([tiny_clip, torch.randn(1, 700)], dim=-1)
    torch.testing.assert_close(enc(padded, torch.tensor([300])), enc(tiny_clip), rtol=1e-5, atol=1e-5)
    wav = torch.randn(2, 8000)
    torch.testing.assert_close(enc(wav), enc(wav, torch.tensor([8000, 8000])))


def test_mel_filterbank():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all()
    assert (fb.amax(dim=1) > 0.5).all()  # no empty filter
    centres = fb.argmax(dim=1)
    assert (centres[1:] >= centres[:-1]).all()
    with pytest.raises(ValueError):
        mel_filterbank(16000, 512, 40, f_max=9000)


def test_encoder_options_are_validated():
    with pytest.raises(ValueError, match="feature"):
        SpectralSpeakerEncoder(feature="mfcc")
    with pytest.raises(DdtseError, match="normalize"):
        MODELS.build({"name": "spectral_speaker_encoder", "normalize": "False"})
    enc = small_encoder(normalize=True)
    torch.testing.assert_close(enc(torch.randn(2, 4000)).norm(dim=-1), torch.ones(2))


def test_precomputed_passthrough_and_projection():
    ident = MODELS.build({"name": "precomputed", "dim": 8})
    assert isinstance(ident, PrecomputedEmbedding) and not ident.uses_enrollment
    assert sum(p.numel() for p in ident.parameters()) == 0 and ident.output_dim == 8
    e = torch.randn(3, 8)
    torch.testing.assert_close(ident(e), e)
    torch.testing.assert_close(ident(e[:, None]), e)  # WeSpeaker-style (B, 1, D)
    proj = PrecomputedEmbedding(dim=8, emb_dim=4)
    assert proj(e).shape == (3, 4) and proj.output_dim == 4
    assert PrecomputedEmbedding(dim=8, project=True).proj is not None
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        ident(torch.randn(3, 5))
