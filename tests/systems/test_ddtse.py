import copy
import math

import pytest
import torch

from ddtse.audio.spectral import SpecConfig, SpectralTransform
from ddtse.diffusion.sde import loss_weight
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.ddtse import DDTSESystem, stage2_branch, stage2_threshold, step_generator

SR = 4000  # 64 bins, hop 32: a 0.5 s clip is 63 frames -> padded to 64


pytestmark = pytest.mark.usefixtures("one_thread")


def make_config(stage=1, **system):
    backbone = {"name": "ncsnpp", "in_channels": 2, "out_channels": 2, "nf": 16, "ch_mult": [1, 2, 2],
                "num_res_blocks": 1, "attn_resolutions": [], "bottleneck_attention": True,
                "time_conditional": False, "bottleneck_fusion": True}
    speaker = {"name": "spectral_speaker_encoder", "emb_dim": 32, "sample_rate": SR, "n_fft": 128,
               "win_length": 100, "hop_length": 40, "n_mels": 20, "channels": 32, "layers": 2}
    sys_cfg = {"name": "ddtse", "lr": 1e-3, "ema_decay": 0.999, "stage": stage}
    sys_cfg.update(system)
    return {"seed": 0, "data": {"sample_rate": SR}, "model": {"name": "ddtse_net", "backbone": backbone, "speaker": speaker},
            "system": sys_cfg, "sampler": {"K": 2, "seed": 100}}


def make_batch(lengths=(1999, 1500), seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    t = torch.arange(T) / SR
    target = torch.stack([0.3 * torch.sin(2 * math.pi * (300 + 200 * b) * t) for b in range(len(lengths))])
    mixture = target + 0.1 * torch.randn(len(lengths), T, generator=g)
    lengths = torch.tensor(lengths)
    keep = (torch.arange(T)[None] < lengths[:, None]).float()
    return {"mixture": (mixture * keep)[:, None], "target": target * keep, "lengths": lengths,
            "enrollment": 0.1 * torch.randn(len(lengths), 2000, generator=g),
            "enrollment_lengths": torch.tensor([2000, 1700][: len(lengths)]),
            "ids": [f"u{b}" for b in range(len(lengths))]}


@pytest.fixture(scope="module")
def system():
    torch.manual_seed(0)
    return SYSTEMS.get("ddtse")(make_config())


def test_registered_and_small(system):
    assert isinstance(system, DDTSESystem)
    assert sum(p.numel() for p in system.model.parameters()) < 500_000
    assert system.needs_enrollment


def test_loss_weighting_per_item_hand_computed(system, monkeypatch):
    batch = make_batch()
    t = torch.tensor([0.03, 1.0])
    monkeypatch.setattr(system.sde, "sample_t", lambda n, generator=None, device=None: t.clone())
    monkeypatch.setattr(system, "denoise", lambda net, x_t, emb: torch.zeros_like(x_t))
    loss, logs = system.branch_loss(batch, "stage1")
    # by hand: peak-normalise by the mixture, compressed STFT, 0.5 * sum over valid frames, lambda per item
    spec = SpectralTransform(SpecConfig.for_rate(SR))
    expected = []
    for b in range(2):
        peak = batch["mixture"][b, 0].abs().max()
        x0 = spec(batch["target"][b] / peak)
        frames = int(batch["lengths"][b]) // 32 + 1
        energy = 0.5 * x0[:, :frames].abs().pow(2).sum()
        expected.append(1 / (math.exp(t[b].item()) - 1) * energy)
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    assert loss_weight(t)[0] / loss_weight(t)[1] == pytest.approx(32.8 / 0.582, rel=1e-2)


def test_stage2_threshold_and_branch():
    assert stage2_threshold(0) == 0.0
    assert stage2_threshold(20) == pytest.approx(0.2)
    assert stage2_threshold(50) == pytest.approx(0.5)
    assert stage2_threshold(300) == pytest.approx(0.5)
    assert stage2_threshold(30, max_threshold=0.2) == pytest.approx(0.2)
    tau = 0.4
    assert stage2_branch(0.0, tau) == "renoise"
    assert stage2_branch(0.19, tau) == "renoise"
    assert stage2_branch(0.2, tau) == "prior"
    assert stage2_branch(0.39, tau) == "prior"
    assert stage2_branch(0.4, tau) == "stage1"
    assert stage2_branch(0.0, 0.0) == "stage1"  # epoch 0 of stage 2 is pure stage 1
    # the per-step draw is reproducible
    a = torch.rand((), generator=step_generator(0, 3, 7))
    assert torch.equal(a, torch.rand((), generator=step_generator(0, 3, 7)))
    assert not torch.equal(a, torch.rand((), generator=step_generator(0, 3, 8)))


def test_stage2_branches_call_pattern(system, monkeypatch):
    batch = make_batch()
    calls = []
    t = torch.tensor([0.3, 0.6])
    monkeypatch.setattr(system.sde, "sample_t", lambda n, generator=None, device=None: t.clone())
    real = system.denoise

    def spy(net, x_t, emb):
        calls.append(torch.is_grad_enabled())
        return real(net, x_t, emb)

    monkeypatch.setattr(system, "denoise", spy)
    for branch, pattern in (("stage1", [True]), ("prior", [True]), ("renoise", [False, True])):
        calls.clear()
        loss, _ = system.branch_loss(batch, branch)
        assert calls == pattern, branch
        assert loss.requires_grad


def test_stage2_prior_branch_lambda_sampled_by_default_or_of_one(monkeypatch):
    torch.manual_seed(0)
    sysA = SYSTEMS.get("ddtse")(make_config(stage=2, prior_branch_lambda="t1"))
    sysB = SYSTEMS.get("ddtse")(make_config(stage=2))  # default: the sampled t, as the reference code
    batch = make_batch()
    for s in (sysA, sysB):
        monkeypatch.setattr(s.sde, "sample_t", lambda n, generator=None, device=None: torch.tensor([0.1, 0.1]))
        monkeypatch.setattr(s, "denoise", lambda net, x_t, emb: torch.zeros_like(x_t))
    la, _ = sysA.branch_loss(batch, "prior")
    lb, _ = sysB.branch_loss(batch, "prior")
    assert (lb / la).item() == pytest.approx(loss_weight(torch.tensor(0.1)).item() / loss_weight(torch.tensor(1.0)).item(), rel=1e-4)


def test_stage2_training_loss_logs_branch(monkeypatch):
    torch.manual_seed(0)
    s = SYSTEMS.get("ddtse")(make_config(stage=2))
    batch = make_batch()
    monkeypatch.setattr(s, "denoise", lambda net, x_t, emb: torch.zeros_like(x_t) + 0 * x_t.real.sum())
    _, logs = s.training_loss(batch)  # no trainer: epoch 0 -> tau 0 -> stage 1
    assert logs["tau"].item() == 0.0 and logs["branch_stage1"].item() == 1.0
    monkeypatch.setattr(DDTSESystem, "current_epoch", property(lambda self: 60))
    seen = set()
    for idx in range(12):
        s._batch_idx = idx
        _, logs = s.training_loss(batch)
        r = torch.rand((), generator=step_generator(0, 60, idx)).item()
        expected = stage2_branch(r, 0.5)
        assert logs[f"branch_{expected}"].item() == 1.0 and logs["tau"].item() == 0.5
        seen.add(expected)
    assert len(seen) >= 2


def test_stage1_overfits_one_batch():
    torch.manual_seed(0)
    s = SYSTEMS.get("ddtse")(make_config(ema_decay=0.0))
    batch = make_batch()
    opt = torch.optim.Adam(s.model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(1)  # same t and noise every step, so the losses are comparable
        loss, _ = s.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert sum(losses[-5:]) < sum(losses[5:10])


def test_extract_batch_shapes_nfe_and_determinism(system):
    batch = make_batch(lengths=(1999, 1333))
    est, info = system.extract_batch(batch, K=2, seed=5)
    assert est.shape == (2, 1999) and torch.isfinite(est).all()
    assert info["nfe"] == 3 and info["sampler"] == "ddtse"
    assert torch.all(est[1, 1333:] == 0)
    est2, _ = system.extract_batch(batch, K=2, seed=5)
    est3, _ = system.extract_batch(batch, K=2, seed=6)
    assert torch.equal(est, est2) and not torch.equal(est, est3)
    est0, info0 = system.extract_batch(batch, K=0)
    assert info0["nfe"] == 1 and est0.shape == (2, 1999)
    # defaults come from the sampler section (K: 2 here)
    assert system.extract_batch(make_batch(lengths=(777,)))[1]["nfe"] == 3


def test_extract_batch_single_channel_and_two_mic(system):
    batch = make_batch(lengths=(1001,))
    two = dict(batch, mixture=torch.cat([batch["mixture"], torch.zeros_like(batch["mixture"])], dim=1))
    a, _ = system.extract_batch(batch, K=1, seed=0)
    b, _ = system.extract_batch(two, K=1, seed=0)
    assert torch.equal(a, b)


def test_perfect_denoiser_round_trip(system, monkeypatch):
    """With D returning the true x0, the output is the target: normalisation, padding, cropping undone."""
    batch = make_batch(lengths=(1999, 1400))
    _, x0, _, _ = system.prepare(batch)
    monkeypatch.setattr(system, "denoise", lambda net, x_t, emb: x0.clone())
    est, info = system.extract_batch(batch, K=3, seed=0)
    assert info["nfe"] == 4
    assert torch.allclose(est, batch["target"], atol=1e-4)
    est_r, info_r = system.extract_batch(batch, K=3, initial_estimate=batch["mixture"][:, 0])
    assert info_r["nfe"] == 3 and torch.allclose(est_r, batch["target"], atol=1e-4)


def test_refinement_t_start_and_initial_estimate(system, monkeypatch):
    batch = make_batch(lengths=(1999, 1500))
    init = batch["target"][:, :1990]  # front-ends may return a slightly different length
    est, info = system.extract_batch(batch, K=10, initial_estimate=init, t_start=1.0, seed=1)
    assert info["nfe"] == 10 and info["sampler"] == "ddtse_refine" and est.shape == (2, 1999)
    _, info = system.extract_batch(batch, K=10, initial_estimate=init, t_start=0.515, seed=1)
    assert info["nfe"] == 5
    # K = 0: no refinement, the initial estimate comes back (through the STFT round trip)
    est0, info0 = system.extract_batch(batch, K=0, initial_estimate=batch["target"])
    assert info0["nfe"] == 0 and torch.allclose(est0, batch["target"], atol=1e-4)
    # the initial estimate is converted into the same normalised domain as the mixture
    seen = []
    real = system.denoise
    monkeypatch.setattr(system, "denoise", lambda net, x_t, emb: (seen.append(x_t), real(net, x_t, emb))[1])
    system.extract_batch(batch, K=1, initial_estimate=batch["target"], t_start=0.03, seed=1)
    _, x0, _, _ = system.prepare(batch)
    y = system.prepare(batch, with_target=False)[0]
    mu = system.sde.mean(x0, y, torch.tensor([0.03, 0.03]))
    assert (seen[0] - mu).abs().pow(2).mean().sqrt().item() < 3 * system.sde.std(0.03).item()
    with pytest.raises(DdtseError):
        system.extract_batch(batch, initial_estimate=torch.zeros(3, 1999))
    with pytest.raises(DdtseError):
        system.extract_batch(batch, initial_estimate=init, t_start=1.5)


def test_opts_validation(system):
    batch = make_batch(lengths=(800,))
    _, info = system.extract_batch(batch, K=1)
    assert info["nfe"] == 2
    with pytest.raises(DdtseError, match=r"unknown option 'N' for system 'ddtse' \(valid options: K, seed, t_start\)"):
        system.extract_batch(batch, K=1, N=30)  # each system takes only its own options (issue 14)
    with pytest.raises(DdtseError):
        system.extract_batch(batch, steps=3)
    with pytest.raises(DdtseError, match="'K' of system 'ddtse' must be int, got 1.5"):
        system.extract_batch(batch, K=1.5)
    with pytest.raises(DdtseError, match="must lie in"):
        system.extract_batch(batch, K=-1)


def test_config_checks():
    cfg = make_config()
    bad = copy.deepcopy(cfg)
    bad["model"]["backbone"]["in_channels"] = 4
    with pytest.raises(DdtseError):
        SYSTEMS.get("ddtse")(bad)
    bad = copy.deepcopy(cfg)
    bad["system"]["stage"] = 3
    with pytest.raises(DdtseError):
        SYSTEMS.get("ddtse")(bad)
    bad = copy.deepcopy(cfg)
    bad["system"]["spec"] = {"n_fft": 254}  # 128 bins, fine
    assert SYSTEMS.get("ddtse")(bad).spec.config.n_bins == 128


@pytest.mark.parametrize("path,name,stage", [
    ("conf/ddtse_stage1.yaml", "ddtse", 1), ("conf/ddtse_stage2.yaml", "ddtse", 2), ("conf/sgmse.yaml", "sgmse", None),
    ("conf/demo/ddtse_stage1.yaml", "ddtse", 1), ("conf/demo/ddtse_stage2.yaml", "ddtse", 2),
    ("conf/demo/sgmse.yaml", "sgmse", None),
])
def test_configs_load(path, name, stage):
    from pathlib import Path

    from ddtse.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / path)
    assert cfg["system"]["name"] == name and cfg["data"]["sample_rate"] == 16000
    if stage is not None:
        assert cfg["system"]["stage"] == stage
        if "demo" not in path:
            assert cfg["system"]["lr"] == (1e-4 if stage == 1 else 5e-5)
            assert cfg["system"]["ema_decay"] == 0.999
    if "demo" in path:  # small enough to build here
        system = SYSTEMS.get(name)(cfg)
        assert sum(p.numel() for p in system.model.parameters()) < 5_000_000


def test_lightning_fit_stage2_with_validation():
    """Two short epochs through Lightning: base training_step/EMA/validation call our hooks."""
    import lightning as L

    cfg = make_config(stage=2, threshold_epochs=1)
    cfg["system"].update(val_opts={"K": 1}, val_metric_items=0)
    torch.manual_seed(0)
    s = SYSTEMS.get("ddtse")(cfg)
    batch = make_batch()

    class Repeat(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return batch

    loader = torch.utils.data.DataLoader(Repeat(), batch_size=None)
    ema_before = [p.clone() for p in s.ema_model.parameters()]
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(s, loader, loader)
    m = trainer.callback_metrics
    assert m["train/tau"].item() == 0.5  # epoch 1 with threshold_epochs 1
    assert sum(m[f"train/branch_{b}"].item() for b in ("stage1", "prior", "renoise")) == 1.0
    assert torch.isfinite(m["val/si_sdr"]) and m["val/nfe"].item() == 2
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, s.ema_model.parameters()))


def test_init_from_refuses_another_spectrogram(tmp_path):
    """Stage 2 starting from a stage-1 checkpoint trained on another compressed-STFT scale (or rate)
    is one clear error, not weights silently applied to a different input representation."""
    torch.manual_seed(0)
    stage1 = SYSTEMS.get("ddtse")(make_config(spec={"beta": 1.0}))
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict(), "hyper_parameters": {"config": stage1.config},
                "ddtse_system": "ddtse"}, path)
    same = SYSTEMS.get("ddtse")(make_config(stage=2, spec={"beta": 1.0}))
    same.load_init_weights(str(path))
    assert all(torch.equal(v, stage1.state_dict()[k]) for k, v in same.state_dict().items())
    with pytest.raises(DdtseError, match="another spectrogram"):
        SYSTEMS.get("ddtse")(make_config(stage=2)).load_init_weights(str(path))
    other_rate = make_config(stage=2, spec={"beta": 1.0})
    other_rate["data"]["sample_rate"] = 8000
    other_rate["model"]["speaker"]["sample_rate"] = 8000
    with pytest.raises(DdtseError, match="trained at 4000 Hz"):
        SYSTEMS.get("ddtse")(other_rate).load_init_weights(str(path))


def test_demo_configs_share_one_spectrogram_scale():
    from pathlib import Path

    from ddtse.config import load_config

    conf = Path(__file__).resolve().parents[2] / "conf"
    specs = [load_config(conf / "demo" / name)["system"].get("spec") for name in
             ("ddtse_stage1.yaml", "ddtse_stage2.yaml", "sgmse.yaml")]
    assert specs == [{"beta": 1.0}] * 3
    assert not load_config(conf / "ddtse_stage1.yaml")["system"].get("spec")  # paper: beta 0.15
