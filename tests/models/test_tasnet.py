"""TD-SpeakerBeam / ASA / IPD (ddtse/models/tasnet.py): shapes, ASA formula, MP pooling, IPD, configs."""
import inspect
import math
from pathlib import Path

import pytest
import torch

from ddtse.config import load_config
from ddtse.errors import DdtseError
from ddtse.models.tasnet import Adaptation, TDSpeakerBeam, asa_scaling, pool_frames
from ddtse.registry import DATASETS, MODELS

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = dict(N=16, L=8, B=16, H=24, P=3, X=2, R=1, adapt_layer=1)
VARIANTS = {
    "mul": {},
    "add": dict(adaptation="add"),
    "muladd": dict(adaptation="muladd", aux_out_proj=True),
    "concat": dict(adaptation="concat", embed_dim=8, aux_out_proj=True),
    "asa": dict(adaptation="asa"),
    "asa_mp": dict(adaptation="asa_mp", mp_kernel=20),
    "skip": dict(skip=8, adapt_skip=True, aux_bottleneck=8, aux_blocks=2, aux_out_proj=True, num_speakers=3),
    "ipd": dict(ipd=True, ipd_dim=8),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw):
    torch.manual_seed(0)
    return TDSpeakerBeam(**{**TINY, **kw})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_exact_lengths_every_variant(variant):
    model = tiny(**VARIANTS[variant]).eval()
    channels = 2 if variant == "ipd" else 1
    enrollment, enr_len = torch.randn(2, 900), torch.tensor([900, 411])
    with torch.no_grad():
        for t in (3999, 4001, 7):
            mixture = torch.randn(2, channels, t)
            out = model(mixture, enrollment, enr_len)
            assert out.shape == (2, t)
            assert torch.isfinite(out).all()
        aux = model(mixture, enrollment, enr_len, lengths=torch.tensor([7, 5]), return_aux=True)
    assert aux["estimate"].shape == (2, 7)
    assert aux["embedding"].shape == (2, model.embed_dim)
    if variant == "skip":
        assert aux["speaker_logits"].shape == (2, 3)
    else:
        assert aux["speaker_logits"] is None


def test_asa_scaling_matches_hand_computation():
    y = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]])  # (1, C=2, T=3)
    e = torch.tensor([[0.5, 2.0]])
    scores = [0.5 * 1 + 2 * 0, 0.5 * 0 + 2 * 1, 0.5 * 2 + 2 * -1]  # 0.5, 2, -1
    z = sum(math.exp(s) for s in scores)
    alpha = [math.exp(s) / z for s in scores]
    expected_a = torch.tensor([[[0.5 * (1 + a) for a in alpha], [2.0 * (1 + a) for a in alpha]]])
    assert torch.allclose(asa_scaling(y, e), expected_a, atol=1e-6)
    out = Adaptation("asa", 2)(y, e)
    assert torch.allclose(out, y * expected_a, atol=1e-6)
    # padded frames are left out of the softmax: with 2 valid frames only scores[:2] count
    z2 = math.exp(scores[0]) + math.exp(scores[1])
    masked = asa_scaling(y, e, frame_lengths=torch.tensor([2]))
    assert masked[0, 0, 0].item() == pytest.approx(0.5 * (1 + math.exp(scores[0]) / z2), abs=1e-6)
    assert masked[0, 0, 2].item() == pytest.approx(0.5, abs=1e-6)  # alpha = 0 on the padded frame


def test_asa_mp_pooling_non_divisible():
    h = torch.arange(45, dtype=torch.float32).reshape(1, 1, 45).repeat(2, 3, 1)
    pooled = pool_frames(h, 20)
    assert pooled.shape == (2, 3, 3)  # ceil(45 / 20)
    assert pooled[0, 0].tolist() == pytest.approx([9.5, 29.5, 42.0])  # last window: frames 40..44 only
    assert pool_frames(h[..., :7], 20).shape == (2, 3, 1)
    e = torch.randn(2, 3)
    a = asa_scaling(h / 45, e, pool=20)
    assert a.shape == (2, 3, 45)
    # nearest-neighbour upsampling: constant over each window of 20 frames
    assert torch.allclose(a[..., :20], a[..., :1].expand(-1, -1, 20))
    assert torch.allclose(a[..., 40:], a[..., 40:41].expand(-1, -1, 5))
    alpha = a[:, 0, ::20] / e[:, :1] - 1  # one alpha per pooled frame, summing to 1
    assert torch.allclose(alpha.sum(-1), torch.ones(2), atol=1e-5)


def test_asa_adds_no_parameters():
    counts = {kind: sum(p.numel() for p in tiny(adaptation=kind).parameters())
              for kind in ("mul", "asa", "asa_mp")}
    assert counts["asa"] == counts["mul"] == counts["asa_mp"]


def test_asa_needs_bottleneck_equal_to_embedding():
    with pytest.raises(DdtseError, match="B == N_e"):
        TDSpeakerBeam(**{**TINY, "B": 8, "adaptation": "asa"})
    with pytest.raises(DdtseError, match="adapt_layer"):
        TDSpeakerBeam(**{**TINY, "adapt_layer": 5})


def test_ipd_of_delayed_tone():
    model = tiny(L=16, ipd=True, ipd_fft_factor=4)
    fs, n_fft, k, d = 8000, 64, 5, 3
    f = k * fs / n_fft  # a tone on bin k
    n = torch.arange(3200, dtype=torch.float32)
    mic1 = torch.sin(2 * math.pi * f * n / fs)
    mic2 = torch.sin(2 * math.pi * f * (n - d) / fs)  # delayed by d samples
    feats = model.ipd_features(torch.stack([mic1, mic2])[None])
    bins = n_fft // 2 + 1
    assert feats.shape == (1, 2 * bins, model.frames_for(3200))
    ipd = torch.atan2(feats[0, bins + k], feats[0, k])[5:-5]  # interior frames
    expected = math.remainder(-2 * math.pi * f * d / fs, 2 * math.pi)
    assert torch.allclose(ipd, torch.full_like(ipd, expected), atol=1e-3)
    assert model.in_audio_channels == 2 and tiny().in_audio_channels == 1
    with pytest.raises(DdtseError, match="two-channel"):
        model(torch.randn(1, 1, 800), torch.randn(1, 800))


def test_enrollment_padding_is_ignored():
    model = tiny(aux_blocks=0).eval()
    enr = torch.randn(1, 1000)
    padded = torch.cat([torch.cat([enr, torch.randn(1, 600)], -1), torch.randn(1, 1600)])
    with torch.no_grad():
        e_alone = model.embed(enr)
        e_pad = model.embed(padded, torch.tensor([1000, 1600]))
    assert torch.allclose(e_alone[0], e_pad[0], atol=1e-5)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(1)
    mix, enr = torch.randn(2, 1, 401), torch.randn(2, 300)
    grads = []
    for flag in (False, True):
        model = tiny(gradient_checkpointing=flag).train()
        model(mix, enr).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("name", ["tsb.yaml", "tsb_paper.yaml", "tsb_asa.yaml", "tsb_asa_mp.yaml",
                                  "tsb_ipd.yaml", "demo/tsb.yaml", "demo/tsb_asa.yaml",
                                  "demo/tsb_asa_mp.yaml", "demo/tsb_ipd.yaml", "tsb_16k.yaml",
                                  "demo/tsb_16k.yaml"])
def test_configs_build(name):
    cfg = load_config(CONF / name)
    assert cfg["model"]["name"] == "td_speakerbeam" and cfg["system"]["name"] == "discriminative"
    model = MODELS.build(cfg["model"])
    n_params = sum(p.numel() for p in model.parameters())
    if name == "demo/tsb_16k.yaml":  # the 16 kHz demo front-end is the narrow, shallow one
        assert 0.2e6 <= n_params <= 0.5e6
    elif name.startswith("demo/"):
        assert 0.5e6 <= n_params <= 1.5e6
    assert model.ipd == name.endswith("ipd.yaml")
    from ddtse.data.base import ExtractionDataset

    accepted = set(inspect.signature(ExtractionDataset.__init__).parameters)
    for part in ("train", "valid", "test"):
        sub = dict(cfg["data"][part])
        cls = DATASETS.get(sub.pop("name"))
        unknown = set(sub) - set(inspect.signature(cls.__init__).parameters) - accepted
        assert not unknown, f"{name}: data.{part} has unknown option(s) {unknown}"
