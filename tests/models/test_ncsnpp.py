"""NCSN++ backbone and the DDTSE network wrapper: shapes, conditioning, counts, checkpointing."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from ddtse.errors import DdtseError
from ddtse.models.ncsnpp import (
    NCSNPP_PRESETS,
    BottleneckFusion,
    ConditionalNCSNpp,
    FiLM,
    NCSNpp,
    ResBlock,
    downsample_fir,
    ncsnpp_preset,
    upsample_fir,
    _fir_kernel_2d,
)
from ddtse.registry import MODELS

from tests.conftest import REPO


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(**overrides) -> NCSNpp:
    torch.manual_seed(0)
    return MODELS.build(ncsnpp_preset("ncsnpp_tiny", **overrides))


def meta_build(cfg: dict) -> torch.nn.Module:
    with torch.device("meta"):
        return MODELS.build(cfg)


# -- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,in_ch,with_t",
    [
        ({}, 2, False),
        ({"time_conditional": True}, 2, True),
        ({"in_channels": 4, "time_conditional": True}, 4, True),
        ({"in_channels": 4, "emb_dim": 0, "bottleneck_fusion": False, "time_conditional": True}, 4, True),
    ],
)
def test_tiny_shapes(overrides, in_ch, with_t):
    net = tiny(**overrides).eval()
    x = torch.randn(2, in_ch, 16, 12)
    emb = torch.randn(2, net.emb_dim) if net.emb_dim else None
    t = torch.tensor([0.03, 1.0]) if with_t else None
    with torch.no_grad():
        out = net(x, emb, t)
    assert out.shape == (2, 2, 16, 12)
    assert torch.isfinite(out).all()


def test_tiny_output_depends_on_time_and_embedding():
    net = tiny(time_conditional=True)
    for p in net.parameters():  # undo the near-zero output inits so every path is visible
        p.data.add_(0.05 * torch.randn_like(p))
    x, emb = torch.randn(1, 2, 8, 8), torch.randn(1, 32)
    with torch.no_grad():
        base = net(x, emb, torch.tensor([0.5]))
        assert not torch.allclose(base, net(x, emb, torch.tensor([0.9])))
        assert not torch.allclose(base, net(x, torch.randn(1, 32), torch.tensor([0.5])))


def test_embedding_and_time_arguments_are_checked():
    net = tiny()
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="emb"):
        net(x)
    with pytest.raises(ValueError, match="emb"):
        net(x, torch.randn(1, 7))
    with pytest.raises(ValueError, match="time-conditional"):
        tiny(time_conditional=True)(x, torch.randn(1, 32))
    with pytest.raises(ValueError, match="no speaker"):
        tiny(emb_dim=0, bottleneck_fusion=False)(x, torch.randn(1, 32))
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(1, 4, 8, 8), torch.randn(1, 32))


def test_divisibility_error_names_the_multiple():
    net = tiny()
    assert net.size_multiple == 4
    with pytest.raises(ValueError, match=r"multiples of 4, got F=16, N=10"):
        net(torch.randn(1, 2, 16, 10), torch.randn(1, 32))


@pytest.mark.parametrize("option", ["fir", "skip_rescale", "time_conditional", "bottleneck_fusion",
                                    "bottleneck_attention", "resamp_with_conv", "gradient_checkpointing"])
def test_bool_options_must_be_real_bools(option):
    options = {k: v for k, v in ncsnpp_preset("ncsnpp_tiny").items() if k != "name"}
    with pytest.raises(TypeError, match=option):
        NCSNpp(**{**options, option: "False"})
    with pytest.raises(DdtseError, match="must be a bool"):
        MODELS.build(ncsnpp_preset("ncsnpp_tiny", **{option: 1}))


def test_other_options_are_validated():
    with pytest.raises(DdtseError, match="progressive"):
        tiny(progressive="residual")
    with pytest.raises(DdtseError, match="bottleneck_fusion"):
        tiny(emb_dim=0, bottleneck_fusion=True)
    with pytest.raises(DdtseError, match="ch_mult"):
        tiny(ch_mult="122")


# -- FIR resampling against upfirdn2d's native reference -----------------------------------------
def upfirdn2d_reference(x, k, up, down, pad0, pad1):
    """score_sde's upfirdn2d_native (square kernel, same up/down/pad on both axes)."""
    b, c, h, w = x.shape
    x = x.reshape(-1, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(-1, h * up, w * up)
    x = F.pad(x, [pad0, pad1, pad0, pad1])[:, None]
    x = F.conv2d(x, torch.flip(k, [0, 1])[None, None])
    x = x[:, 0, ::down, ::down]
    return x.reshape(b, c, x.shape[-2], x.shape[-1])


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 5, 3]])  # the second one is asymmetric
def test_fir_resampling_matches_upfirdn2d(taps):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6)
    k_up, k_down = _fir_kernel_2d(taps, 4.0), _fir_kernel_2d(taps, 1.0)
    p = len(taps) - 2
    ref_up = upfirdn2d_reference(x, k_up, 2, 1, (p + 1) // 2 + 1, p // 2)
    ref_down = upfirdn2d_reference(x, k_down, 1, 2, (p + 1) // 2, p // 2)
    torch.testing.assert_close(upsample_fir(x, k_up), ref_up)
    torch.testing.assert_close(downsample_fir(x, k_down), ref_down)
    assert ref_up.shape == (2, 3, 16, 12) and ref_down.shape == (2, 3, 4, 3)


# -- FiLM and bottleneck fusion --------------------------------------------------------------
def test_film_is_per_channel_by_hand():
    film = FiLM(emb_dim=2, channels=3)
    with torch.no_grad():
        film.gamma.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]))
        film.gamma.bias.copy_(torch.tensor([0.0, 0.1, -1.0]))
        film.beta.weight.copy_(torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 0.0]]))
        film.beta.bias.copy_(torch.tensor([0.5, 0.0, 0.25]))
    h = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4) / 10
    e = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    expected = torch.empty_like(h)
    for b in range(2):
        for c in range(3):
            gamma = float(film.gamma.weight[c] @ e[b] + film.gamma.bias[c])
            beta = float(film.beta.weight[c] @ e[b] + film.beta.bias[c])
            expected[b, c] = h[b, c] + gamma * h[b, c] + beta  # one scalar pair per channel
    torch.testing.assert_close(film(h, e), expected)


def test_film_change_of_one_channel_gamma_touches_only_that_channel():
    torch.manual_seed(0)
    film = FiLM(emb_dim=4, channels=5)
    h, e = torch.randn(2, 5, 3, 7), torch.randn(2, 4)
    before = film(h, e)
    with torch.no_grad():
        film.gamma.bias[2] += 1.0
    diff = (film(h, e) - before).abs().amax(dim=(0, 2, 3))
    assert diff[2] > 0 and torch.count_nonzero(diff) == 1
    torch.testing.assert_close(film(h, e)[:, 2] - before[:, 2], h[:, 2])  # the added 1·h


def test_resblock_applies_film_after_conv_1_before_the_skip_sum():
    torch.manual_seed(0)
    block = ResBlock(4, 8, emb_dim=3, init_scale=1.0).eval()
    x, e = torch.randn(2, 4, 6, 6), torch.randn(2, 3)
    h = block.conv_0(F.silu(block.norm_0(x)))
    h = block.conv_1(F.silu(block.norm_1(h)))
    gamma, beta = block.film.gamma(e), block.film.beta(e)
    h = h + gamma[:, :, None, None] * h + beta[:, :, None, None]
    expected = (block.skip(x) + h) / math.sqrt(2)
    torch.testing.assert_close(block(x, None, e), expected)


def test_bottleneck_fusion_is_per_position():
    torch.manual_seed(0)
    fusion = BottleneckFusion(channels=3, emb_dim=2)
    h, e = torch.randn(2, 3, 4, 5), torch.randn(2, 2)
    out = fusion(h, e)
    w, bias = fusion.proj.weight, fusion.proj.bias
    for b in range(2):
        for f in range(4):
            for n in range(5):
                vec = torch.cat([h[b, :, f, n], e[b]])
                torch.testing.assert_close(out[b, :, f, n], w @ vec + bias)


# -- determinism and checkpointing -------------------------------------------------------------
def test_deterministic_construction_and_forward():
    x, e = torch.randn(2, 2, 16, 8), torch.randn(2, 32)
    a, b = tiny().eval(), tiny().eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x, e), b(x, e), rtol=0, atol=0)
        torch.testing.assert_close(a(x, e), a(x, e), rtol=0, atol=0)


def test_gradient_checkpointing_gives_identical_outputs_and_gradients():
    plain = tiny(time_conditional=True, attn_resolutions=[8], dropout=0.1)
    for p in plain.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing = True
    x, e, t = torch.randn(2, 2, 8, 8), torch.randn(2, 32), torch.tensor([0.2, 0.7])
    outs = []
    for net in (plain, ckpt):
        torch.manual_seed(123)  # same dropout masks
        out = net(x, e, t)
        out.square().mean().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1])
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)


def test_tiny_overfits_one_batch():
    torch.manual_seed(0)
    net = tiny()
    x, e = torch.randn(2, 2, 8, 8), torch.randn(2, 32)
    target = 0.5 * torch.randn(2, 2, 8, 8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.mse_loss(net(x, e), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, losses[::10]


# -- parameter counts ---------------------------------------------------------------------------
PRESET_COUNTS = {
    "ncsnpp_paper": 65_306_132,
    "ncsnpp_m": 27_478_158,
    "ncsnpp_small": 3_623_472,
    "ncsnpp_tiny": 307_516,
    "ncsnpp_sgmse": 65_590_694,
    "ncsnpp_sgmse_conditional": 71_314_342,
}


@pytest.mark.parametrize("name", sorted(NCSNPP_PRESETS))
def test_preset_parameter_counts_are_pinned(name):
    assert n_params(meta_build(ncsnpp_preset(name))) == PRESET_COUNTS[name]




def test_preset_sizes_are_in_range():
    assert 65e6 <= PRESET_COUNTS["ncsnpp_paper"] <= 72e6
    assert 26e6 <= PRESET_COUNTS["ncsnpp_m"] <= 30e6
    assert 3e6 <= PRESET_COUNTS["ncsnpp_small"] <= 5e6
    assert PRESET_COUNTS["ncsnpp_tiny"] < 0.5e6


def test_architecture_matches_the_reference_parameter_counts():
    """Spec sections 3 and 6. The reference keeps the Fourier projection's W as a frozen
    Parameter (nf values; a buffer here), and its speaker-conditioned networks without time
    input still build every residual block's Dense_0 (temb_dim = 4 nf), unused."""

    def unused_dense(net):
        return sum(b.conv_1.out_channels * (4 * net.nf + 1) for b in net.modules() if isinstance(b, ResBlock))

    sgmse = meta_build(ncsnpp_preset("ncsnpp_sgmse"))
    assert n_params(sgmse) + 128 == 65_590_822
    conditional = meta_build(ncsnpp_preset("ncsnpp_sgmse_conditional"))
    assert n_params(conditional) + 128 == 71_314_470
    sgmse_m = meta_build(ncsnpp_preset("ncsnpp_sgmse", ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[]))
    assert n_params(sgmse_m) + 128 == 27_756_314
    paper = meta_build(ncsnpp_preset("ncsnpp_paper"))
    assert n_params(paper) + unused_dense(paper) + 128 == 70_887_700
    no_fusion = meta_build(ncsnpp_preset("ncsnpp_paper", bottleneck_fusion=False))
    assert n_params(no_fusion) + unused_dense(no_fusion) + 128 == 70_756_372
    small_12m = meta_build(ncsnpp_preset("ncsnpp_paper", nf=96, ch_mult=[1, 2, 2, 1], num_res_blocks=1,
                                         attn_resolutions=[], bottleneck_fusion=False))
    assert n_params(small_12m) + unused_dense(small_12m) + 96 == 12_920_846


@pytest.mark.parametrize("name", ["ncsnpp_paper", "ncsnpp_m", "ncsnpp_small", "ncsnpp_tiny"])
def test_yaml_presets_match_the_python_presets(name):
    cfg = yaml.safe_load((REPO / "conf" / "model" / f"{name}.yaml").read_text())
    assert cfg["model"] == ncsnpp_preset(name)


def test_unknown_preset_is_a_user_error():
    with pytest.raises(DdtseError, match="ncsnpp_tiny"):
        ncsnpp_preset("ncsnpp_huge")


# -- DDTSE network wrapper ----------------------------------------------------------------------
SPEAKER = {"name": "spectral_speaker_encoder", "emb_dim": 32, "channels": 16, "layers": 2, "n_mels": 20}


def test_ddtse_net_with_enrollment_encoder():
    torch.manual_seed(0)
    net = MODELS.build({"name": "ddtse_net", "backbone": "ncsnpp_tiny", "speaker": SPEAKER}).eval()
    assert isinstance(net, ConditionalNCSNpp) and net.emb_dim == 32 and net.backbone.emb_dim == 32
    x = torch.randn(2, 2, 16, 8)
    enrollment, lengths = torch.randn(2, 8000), torch.tensor([8000, 5000])
    with torch.no_grad():
        out = net(x, enrollment=enrollment, enrollment_lengths=lengths)
        emb = net.speaker_embedding(enrollment, lengths)
        torch.testing.assert_close(out, net.backbone(x, emb))
    assert out.shape == (2, 2, 16, 8) and emb.shape == (2, 32)
    with pytest.raises(ValueError, match="enrollment"):
        net(x)


def test_ddtse_net_sets_emb_dim_from_the_speaker_and_rejects_a_mismatch():
    backbone = {k: v for k, v in ncsnpp_preset("ncsnpp_tiny").items() if k != "emb_dim"}
    net = MODELS.build({"name": "ddtse_net", "backbone": backbone,
                        "speaker": {"name": "precomputed", "dim": 24}})
    assert net.backbone.emb_dim == 24
    out = net(torch.randn(1, 2, 8, 8), embedding=torch.randn(1, 1, 24))
    assert out.shape == (1, 2, 8, 8)
    with pytest.raises(DdtseError, match="emb_dim"):
        MODELS.build({"name": "ddtse_net", "backbone": {**backbone, "emb_dim": 16},
                      "speaker": {"name": "precomputed", "dim": 24}})


def test_ddtse_net_without_speaker_is_unconditional_and_time_conditional_sgmse_works():
    net = MODELS.build({"name": "ddtse_net", "speaker": None,
                        "backbone": ncsnpp_preset("ncsnpp_tiny", in_channels=4, time_conditional=True, emb_dim=0)})
    assert net.backbone.emb_dim == 0 and net.backbone.mid_fusion is None
    out = net(torch.randn(2, 4, 8, 8), t=torch.tensor([0.1, 0.9]))
    assert out.shape == (2, 2, 8, 8)
