"""DPTNet (ddtse/models/dptnet.py): exact output lengths, registry/config build, chunking helpers, checkpointing."""
from pathlib import Path

import pytest
import torch

from ddtse.config import load_config
from ddtse.errors import DdtseError
from ddtse.models.dptnet import DPTNet
from ddtse.registry import MODELS

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = dict(n=8, e=16, k=6, d=1, heads=2, lstm_hidden=4, window=8)


def tiny(**kw):
    torch.manual_seed(0)
    return DPTNet(**{**TINY, **kw}).eval()


@pytest.mark.parametrize("length", [1, 5, 8, 9, 63, 100, 257])
def test_exact_length_for_any_t(length):
    model = tiny()
    assert model(torch.randn(2, 1, length)).shape == (2, length)
    assert model(torch.randn(1, length)).shape == (1, length)


@pytest.mark.parametrize("window", [2, 7])
def test_odd_and_minimal_windows(window):
    model = tiny(window=window, k=4)
    for length in (3, 31):
        assert model(torch.randn(1, 1, length)).shape == (1, length)


def test_fold_inverts_split_up_to_overlap_count():
    model = tiny(k=6)
    x = torch.randn(1, 8, 23)
    chunks = model._split(x)
    assert chunks.shape[:3] == (1, 8, 6)
    ones = model._merge(torch.ones_like(chunks), 23)
    merged = model._merge(chunks, 23)
    assert torch.allclose(merged / ones, x, atol=1e-6)  # every frame is covered (twice, 50 % overlap)


@pytest.mark.parametrize("k, length", [(6, 23), (7, 23), (2, 5), (250, 301), (9, 1)])
def test_merge_equals_fold(k, length):
    """The exportable overlap-add equals F.fold's sum (the layout _split's unfold makes), any k."""
    import torch.nn.functional as F

    model = tiny(k=k)
    chunks = torch.randn(2, 3, k, model._split(torch.randn(2, 3, length)).shape[-1])
    b, n, kk, s = chunks.shape
    fold = F.fold(chunks.reshape(b, n * kk, s), output_size=(length, 1), kernel_size=(k, 1), padding=(k, 0),
                  stride=(k // 2, 1)).reshape(b, n, length)
    assert torch.allclose(model._merge(chunks, length), fold, atol=1e-6)


def test_self_attention_equals_torch_multihead_attention():
    from ddtse.models.dptnet import ImprovedTransformerLayer

    torch.manual_seed(0)
    layer = ImprovedTransformerLayer(8, 2, 4).eval()
    x = torch.randn(3, 11, 8)
    expected, _ = layer.mha(x, x, x, need_weights=False)
    assert torch.allclose(layer.self_attention(x), expected, atol=1e-6)


def test_padded_length_int_and_tensor_agree():
    model = tiny(window=8)
    for t in (1, 7, 8, 9, 12, 13, 100):
        assert int(model.padded_length(torch.tensor(t))) == model.padded_length(t)


def test_registry_config_and_attributes():
    cfg = load_config(CONF / "model" / "dptnet_tiny.yaml")["model"]
    model = MODELS.build(cfg)
    assert isinstance(model, DPTNet) and DPTNet.needs_enrollment is False
    assert model(torch.randn(1, 1, 500)).shape == (1, 500)
    paper = load_config(CONF / "model" / "dptnet_paper.yaml")["model"]
    assert (paper["n"], paper["e"], paper["k"], paper["d"], paper["heads"], paper["lstm_hidden"]) == (64, 256, 250, 6, 4, 128)


def test_bad_options_are_clear():
    with pytest.raises(DdtseError, match="divisible"):
        DPTNet(n=10, heads=4)
    with pytest.raises(DdtseError, match="window"):
        DPTNet(window=1)
    with pytest.raises(DdtseError, match=r"\(B, 1, T\)"):
        tiny()(torch.randn(1, 2, 50))


def test_gradient_checkpointing_matches_plain_gradients():
    x = torch.randn(1, 1, 120)
    grads = []
    for ckpt in (False, True):
        model = tiny(gradient_checkpointing=ckpt).train()
        model(x).pow(2).sum().backward()
        grads.append(model.encoder.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_deterministic_in_eval():
    model = tiny()
    x = torch.randn(1, 1, 77)
    assert torch.equal(model(x), model(x))


def test_trains_through_the_discriminative_system_with_loudness_term():
    from ddtse.systems.discriminative import DiscriminativeSystem

    torch.manual_seed(0)
    cfg = {
        "data": {"sample_rate": 8000},
        "model": {"name": "dptnet", **TINY},
        "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.0, "rms_loss_weight": 128.0},
    }
    system = DiscriminativeSystem(cfg)
    assert system.needs_enrollment is False
    target = torch.randn(2, 400) * 0.1
    batch = {"mixture": (target + 0.05 * torch.randn(2, 400))[:, None], "target": target,
             "lengths": torch.tensor([400, 300])}
    loss, logs = system.training_loss(batch)
    assert torch.isfinite(loss) and "rms_loss" in logs and logs["rms_loss"] > 0
    loss.backward()
    assert system.model.encoder.weight.grad is not None
    estimate, info = system.extract_batch(batch)
    assert estimate.shape == (2, 400) and info["nfe"] == 1
