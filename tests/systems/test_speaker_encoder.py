"""SpeakerEncoderSystem (ddtse/systems/speaker_encoder.py): AAM softmax, training through train.py's
run_training, checkpoint -> load_speaker_encoder, and the evaluate_speaker CLI."""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ddtse.cli import run_cli
from ddtse.cli.evaluate_speaker import main as evaluate_main
from ddtse.errors import DdtseError
from ddtse.checkpoint import load_speaker_encoder
from ddtse.speaker_verification import read_trials
from ddtse.systems.speaker_encoder import AAMSoftmax, SpeakerEncoderSystem

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 8000
ENCODER = {"name": "ecapa_tdnn", "emb_dim": 16, "sample_rate": SR, "n_fft": 256, "win_length": 200,
           "hop_length": 80, "n_mels": 20, "channels": 16, "blocks": 1, "se_channels": 8, "attention_channels": 8}


def write_speakers(root, speakers=("a", "b", "c", "d"), per_speaker=3):
    """``<root>/<speaker>/<utt>.wav``: harmonic tones, one fundamental per speaker, 0.5-0.7 s."""
    rng = np.random.default_rng(0)
    for s, spk in enumerate(speakers):
        for u in range(per_speaker):
            t = np.arange(int((0.5 + 0.1 * u) * SR)) / SR
            f0 = 120.0 * (1.35 ** s) * (1 + 0.02 * u)
            wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * 0.1
            path = root / spk / f"{spk}-{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (wav + 0.003 * rng.standard_normal(t.size)).astype(np.float32), SR)
    return root


def config(train_dir, valid_dir, **system):
    return {"seed": 0, "data": {"sample_rate": SR, "batch_size": 4, "valid_batch_size": 3, "num_workers": 0,
                                "train": {"name": "speaker_utterances", "sources": [str(train_dir)],
                                          "segment_seconds": 0.4, "noise_prob": 0.5},
                                "valid": {"name": "speaker_utterances", "sources": [str(valid_dir)]}},
            "model": dict(ENCODER),
            "system": {"name": "speaker_encoder", "lr": 3e-3, "ema_decay": 0.0, "margin": 0.2,
                       "margin_warmup_steps": 2, "spec_augment": {"freq_masks": 1, "time_masks": 1},
                       "scheduler": {"name": "cosine", "warmup_steps": 2}, **system},
            "trainer": {"max_epochs": 2, "limit_train_batches": 2, "accelerator": "cpu", "devices": 1,
                        "num_sanity_val_steps": 0, "log_every_n_steps": 1, "enable_progress_bar": False}}


def test_aam_softmax_logits():
    head = AAMSoftmax(2, 3, margin=0.3, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    emb = torch.tensor([[math.cos(0.5), math.sin(0.5)]])  # 0.5 rad from class 0
    logits = head(emb, torch.tensor([0]))
    torch.testing.assert_close(logits, 10 * torch.tensor([[math.cos(0.8), math.sin(0.5), -math.cos(0.5)]]))
    torch.testing.assert_close(head(emb, torch.tensor([0]), margin=0.0)[0, 0], 10 * torch.tensor(math.cos(0.5)))


def test_trains_saves_and_scores(tmp_path, capsys):
    from ddtse.training import run_training

    train_dir = write_speakers(tmp_path / "train")
    valid_dir = write_speakers(tmp_path / "valid", speakers=("e", "f", "g"))
    cfg = config(train_dir, valid_dir)
    system = SpeakerEncoderSystem(cfg)
    assert system.num_speakers == 4 and "num_speakers" not in cfg["system"]  # counted, caller untouched
    run_training(cfg, tmp_path / "exp", resume=False)
    last = tmp_path / "exp" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    curves = json.loads((tmp_path / "exp" / "training_curves.json").read_text())
    assert len(curves["val/eer"]) == 2 and all(0 <= v <= 100 for _, v in curves["val/eer"])
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["system"]["num_speakers"] == 4
    trained = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    assert any(not torch.equal(trained[k], v) for k, v in system.model.state_dict().items())  # it learned
    net = load_speaker_encoder(last)
    assert not net.training and net.output_dim == 16

    trials = tmp_path / "trials.txt"
    out = tmp_path / "eer.json"
    argv = ["--ckpt", str(last), "--data", str(valid_dir), "--trials", str(trials), "--output", str(out)]
    assert run_cli(evaluate_main, argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert "EER" in printed and f"{result['trials']} trials" in printed
    assert result["trials"] == len(read_trials(trials)) == 36 and result["target_trials"] == 9
    assert result["speakers"] == 3 and 0.0 <= result["eer"] <= 100.0
    assert run_cli(evaluate_main, argv) == 0  # the written trial list is reused: same result
    assert json.loads(out.read_text())["eer"] == pytest.approx(result["eer"])


def test_loss_falls_on_a_fixed_batch(tmp_path):
    from ddtse.data.datamodule import build_dataset, collate_batch

    train_dir = write_speakers(tmp_path / "train")
    cfg = config(train_dir, train_dir, margin_warmup_steps=0, spec_augment=None, scheduler=None)
    torch.manual_seed(0)
    system = SpeakerEncoderSystem(cfg)
    dataset = build_dataset(cfg["data"]["train"], SR, train=True)
    batch = collate_batch([dataset[(i, 0)] for i in range(len(dataset))])
    optimizer = system.configure_optimizers()
    system.train()
    losses = []
    for _ in range(25):
        loss, _ = system.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_needs_speaker_labels(tmp_path):
    cfg = config(tmp_path, tmp_path)
    cfg["data"]["train"] = {"name": "libri2mix", "root": str(tmp_path), "split": "dev"}
    with pytest.raises(DdtseError):
        SpeakerEncoderSystem(cfg)
    cfg["system"]["num_speakers"] = 1
    with pytest.raises(DdtseError, match="at least 2 speakers"):
        SpeakerEncoderSystem(cfg)
