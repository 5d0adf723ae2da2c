"""The ``pretrained`` speaker clue (ddtse/models/speaker.py): an ecapa_tdnn speaker encoder read from a
speaker_encoder checkpoint, frozen or fine-tuned, inside DDTSE and TD-SpeakerBeam; load_speaker_encoder."""
import copy

import numpy as np
import pytest
import torch

from ddtse.errors import DdtseError
from ddtse.extract import CHECKPOINT_KEY, Extractor
from ddtse.checkpoint import load_speaker_encoder
from ddtse.models.speaker import EcapaTdnn, PretrainedSpeakerEncoder
from ddtse.registry import MODELS, SYSTEMS

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000
ENCODER = {"name": "ecapa_tdnn", "emb_dim": 24, "sample_rate": SR, "n_fft": 256, "win_length": 200,
           "hop_length": 80, "n_mels": 20, "channels": 16, "blocks": 1, "se_channels": 8, "attention_channels": 8}
TSB = dict(name="td_speakerbeam", N=16, L=8, B=16, H=24, X=2, R=1, adapt_layer=0)
BACKBONE = {"name": "ncsnpp", "in_channels": 2, "out_channels": 2, "nf": 16, "ch_mult": [1, 2, 2],
            "num_res_blocks": 1, "attn_resolutions": [], "bottleneck_attention": True,
            "time_conditional": False, "bottleneck_fusion": True}


def save_system(system, path):
    """What Lightning writes (system name, state_dict, hparams with the resolved config)."""
    torch.save({CHECKPOINT_KEY: type(system).registry_name, "state_dict": system.state_dict(),
                "hyper_parameters": {"config": copy.deepcopy(system.hparams["config"])}}, path)
    return path


@pytest.fixture
def encoder_ckpt(tmp_path):
    torch.manual_seed(0)
    config = {"seed": 0, "data": {"sample_rate": SR}, "model": dict(ENCODER),
              "system": {"name": "speaker_encoder", "num_speakers": 5, "ema_decay": 0.0}}
    system = SYSTEMS.get("speaker_encoder")(config)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval/train mode matters
        for m in system.model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return save_system(system, tmp_path / "encoder.ckpt"), system.model.eval()


def tsb_system(speaker, **system):
    config = {"seed": 0, "data": {"sample_rate": SR}, "model": {**TSB, "speaker": speaker},
              "system": {"name": "discriminative", "lr": 1e-2, "ema_decay": 0.0, **system}}
    return SYSTEMS.get("discriminative")(config)


def batch(b=2, t=4000, te=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = 0.3 * torch.randn(b, t, generator=g)
    return {"mixture": (target + 0.3 * torch.randn(b, t, generator=g))[:, None], "target": target,
            "enrollment": 0.3 * torch.randn(b, te, generator=g), "lengths": torch.full((b,), t),
            "enrollment_lengths": torch.tensor([te, te // 2][:b])}


def test_ecapa_ignores_padding_in_eval_mode():
    net = EcapaTdnn(**{k: v for k, v in ENCODER.items() if k != "name"}).eval()
    wav = torch.randn(1, 3000)
    padded = torch.cat([wav, 5 * torch.randn(1, 1000)], dim=1)
    with torch.no_grad():
        a, b = net(wav, torch.tensor([3000])), net(padded, torch.tensor([3000]))
    assert a.shape == (1, 24)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_load_speaker_encoder_reads_the_trained_weights(encoder_ckpt):
    path, reference = encoder_ckpt
    net = load_speaker_encoder(path)
    assert not net.training and net.output_dim == 24 and net.sample_rate == SR
    wav = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(net(wav, torch.tensor([4000, 3000])), reference(wav, torch.tensor([4000, 3000])))


def test_frozen_encoder_gets_no_gradient_and_keeps_its_statistics(encoder_ckpt):
    path, reference = encoder_ckpt
    system = tsb_system({"name": "pretrained", "ckpt": str(path), "freeze": True})
    speaker = system.model.speaker
    assert isinstance(speaker, PretrainedSpeakerEncoder) and system.model.speaker_proj.in_features == 24
    before = copy.deepcopy(speaker.net.state_dict())
    optimizer = system.configure_optimizers()
    system.train()
    assert not speaker.net.training  # eval mode kept: BatchNorm statistics do not move
    loss, _ = system.training_loss(batch())
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in speaker.net.parameters())
    for key, value in speaker.net.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert system.model.speaker_proj.weight.grad is not None  # the projection and the extractor train
    with torch.no_grad():  # and the embedding is the encoder's (L2-normalised)
        emb = speaker(batch()["enrollment"], batch()["enrollment_lengths"])
        ref = reference(batch()["enrollment"], batch()["enrollment_lengths"])
    torch.testing.assert_close(emb, torch.nn.functional.normalize(ref, dim=-1))


def test_unfrozen_encoder_is_fine_tuned(encoder_ckpt):
    path, _ = encoder_ckpt
    system = tsb_system({"name": "pretrained", "ckpt": str(path), "freeze": False})
    system.train()
    assert system.model.speaker.net.training
    loss, _ = system.training_loss(batch())
    loss.backward()
    assert system.model.speaker.net.proj.weight.grad.abs().sum() > 0


def test_extractor_checkpoint_rebuilds_without_the_encoder_file(encoder_ckpt, tmp_path):
    path, reference = encoder_ckpt
    config = {"seed": 0, "data": {"sample_rate": SR},
              "model": {"name": "ddtse_net", "backbone": BACKBONE,
                        "speaker": {"name": "pretrained", "ckpt": str(path)}},
              "system": {"name": "ddtse", "lr": 1e-3, "ema_decay": 0.0}, "sampler": {"K": 1, "seed": 100}}
    system = SYSTEMS.get("ddtse")(copy.deepcopy(config))
    assert system.hparams["config"]["model"]["speaker"]["encoder"]["name"] == "ecapa_tdnn"
    assert "encoder" not in config["model"]["speaker"]  # the caller's config is untouched
    extractor_ckpt = save_system(system, tmp_path / "ddtse.ckpt")
    path.unlink()
    extractor = Extractor.load(extractor_ckpt)
    rng = np.random.default_rng(0)
    estimate, info = extractor.extract(0.1 * rng.standard_normal(4000).astype(np.float32),
                                       0.1 * rng.standard_normal(4000).astype(np.float32), K=1)
    assert estimate.shape == (4000,) and np.isfinite(estimate).all()
    # the encoder inside the extractor checkpoint is the trained one
    net = load_speaker_encoder(extractor_ckpt)
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(net(wav), reference(wav))


def test_wrong_checkpoint_types_are_one_clear_error(encoder_ckpt, tmp_path):
    path, _ = encoder_ckpt
    tsb = save_system(tsb_system(None), tmp_path / "tsb.ckpt")
    with pytest.raises(DdtseError, match="holds a 'discriminative' model, not a speaker encoder"):
        tsb_system({"name": "pretrained", "ckpt": str(tsb)})
    with pytest.raises(DdtseError, match="without a speaker encoder"):
        load_speaker_encoder(tsb)
    with pytest.raises(DdtseError, match="checkpoint not found"):
        tsb_system({"name": "pretrained", "ckpt": str(tmp_path / "missing.ckpt")})
    with pytest.raises(DdtseError, match="needs ckpt"):
        tsb_system({"name": "pretrained"})
    with pytest.raises(DdtseError, match="freeze"):
        tsb_system({"name": "pretrained", "ckpt": str(path), "freeze": "yes"})


@pytest.mark.parametrize("adaptation", ["mul", "asa"])
def test_tsb_takes_any_speaker_module(adaptation):
    speaker = {"name": "spectral_speaker_encoder", "emb_dim": 12, "sample_rate": SR, "n_fft": 256,
               "win_length": 200, "hop_length": 80, "n_mels": 20, "channels": 8, "layers": 2}
    model = MODELS.build({**TSB, "adaptation": adaptation, "speaker": speaker})
    assert not hasattr(model, "aux_encoder") and model.speaker_proj.out_features == 16
    b = batch()
    out = model(b["mixture"], b["enrollment"], b["enrollment_lengths"], return_aux=True)
    assert out["estimate"].shape == (2, 4000) and out["embedding"].shape == (2, 16)
    out["estimate"].pow(2).mean().backward()
    assert model.speaker.proj.weight.grad.abs().sum() > 0  # a joint speaker module trains with the extractor
    with pytest.raises(DdtseError, match="does not read the enrollment"):
        MODELS.build({**TSB, "speaker": {"name": "precomputed", "dim": 16}})


def test_an_encoder_at_another_rate_is_refused(encoder_ckpt):
    path, _ = encoder_ckpt
    config = {"seed": 0, "data": {"sample_rate": 16000}, "model": {**TSB, "speaker": {"name": "pretrained", "ckpt": str(path)}},
              "system": {"name": "discriminative", "ema_decay": 0.0}}
    with pytest.raises(DdtseError, match="works at 8000 Hz but this extractor at 16000 Hz"):
        SYSTEMS.get("discriminative")(config)


def test_a_replaced_encoder_file_does_not_break_the_extractor(encoder_ckpt, tmp_path):
    path, reference = encoder_ckpt
    system = tsb_system({"name": "pretrained", "ckpt": str(path)})
    extractor_ckpt = save_system(system, tmp_path / "tsb_pretrained.ckpt")
    save_system(tsb_system(None), path)  # the encoder file now holds something else
    net = load_speaker_encoder(extractor_ckpt)
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(net(wav), reference(wav))
