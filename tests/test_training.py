"""train.py / infer.py end to end on a tiny corpus: outputs, resume, init_from, checkpoints, DDP, bad inputs."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ddtse.cli import run_cli
from ddtse.cli.infer import main as infer_main
from ddtse.cli.train import main as train_main
from ddtse.config import load_config
from ddtse.errors import DdtseError
from ddtse.extract import Extractor, load_checkpoint
from ddtse.training import run_training

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_ckpt import make_tiny_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory)


def tiny_config(root: Path) -> dict:
    cfg = load_config(REPO / "conf" / "model" / "tsb_tiny.yaml")
    split = lambda s, **kw: {"name": "libri2mix", "root": str(root), "split": s, "mode": "min",  # noqa: E731
                             "mixture_type": "mix_both", **kw}
    cfg.update({
        "seed": 0,
        "data": {"sample_rate": 8000, "batch_size": 2, "valid_batch_size": 2, "num_workers": 0,
                 "train": split("train-100", segment_seconds=0.5, enrollment_seconds=1.0),
                 "valid": split("dev", max_items=2), "test": split("test")},
        "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.9, "val_metric_items": 1},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "accelerator": "cpu",
                    "devices": 1, "enable_progress_bar": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1},
    })
    return cfg


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    from ddtse.training import run_training

    exp = tmp_path_factory.mktemp("exp") / "tsb"
    trainer = run_training(tiny_config(corpus), exp)
    return exp, trainer


def test_experiment_dir_has_config_checkpoints_logs_and_curves(trained):
    exp, trainer = trained
    assert trainer.global_step == 2
    assert yaml.safe_load((exp / "config.yaml").read_text())["system"]["name"] == "discriminative"
    assert (exp / "checkpoints" / "last.ckpt").is_file()
    assert list((exp / "checkpoints").glob("best-*.ckpt"))
    assert list((exp / "tb").rglob("events.out.tfevents*"))
    assert (exp / "training_curves.png").stat().st_size > 1000
    ckpt = load_checkpoint(exp / "checkpoints" / "last.ckpt")  # weights_only=True inside
    assert ckpt["ddtse_system"] == "discriminative"
    assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "td_speakerbeam"
    assert any(k.startswith("ema_model.") for k in ckpt["state_dict"])


def test_resume_continues_from_last_checkpoint(trained, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # resume loads weights_only regardless
    from ddtse.training import run_training

    exp, _ = trained
    copy = tmp_path / "resumed"
    shutil.copytree(exp, copy)
    cfg = tiny_config(corpus)
    cfg["trainer"]["max_epochs"] = 2
    trainer = run_training(cfg, copy)
    assert trainer.current_epoch == 2 and trainer.global_step == 4  # 2 steps restored + 2 new
    assert f"resuming from {copy / 'checkpoints' / 'last.ckpt'} at step 2" in capsys.readouterr().out
    curves = json.loads((copy / "training_curves.json").read_text())
    for key in ("train/loss", "val/si_sdr"):  # epoch 0 kept from the first run, each epoch once
        assert [e for e, _ in curves[key]] == [0, 1], (key, curves[key])
    changed = tiny_config(corpus)
    changed["model"]["H"] = 32
    with pytest.raises(DdtseError, match="different 'model' config"):
        run_training(changed, copy)


def test_init_from_takes_weights_and_ema_not_optimizer(trained, corpus):
    from ddtse.training import build_system

    exp, _ = trained
    cfg = tiny_config(corpus)
    system = build_system(cfg)
    system.load_init_weights(str(exp / "checkpoints" / "last.ckpt"))
    state = load_checkpoint(exp / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in system.state_dict().items():
        assert torch.equal(value, state[key]), key
    other = tiny_config(corpus)
    other["model"]["H"] = 32
    with pytest.raises(DdtseError, match="does not match"):
        build_system(other).load_init_weights(str(exp / "checkpoints" / "last.ckpt"))


def test_extractor_loads_and_extracts_at_any_rate(trained, corpus):
    exp, _ = trained
    ext = Extractor.load(exp / "checkpoints" / "last.ckpt", "cpu")
    mix = sorted((corpus / "wav8k" / "min" / "test" / "mix_both").glob("*.wav"))[0]
    s1 = corpus / "wav8k" / "min" / "test" / "s1" / mix.name
    mixture, _ = sf.read(mix, dtype="float32")
    enrollment, _ = sf.read(s1, dtype="float32")
    est, info = ext.extract(mixture, enrollment)
    assert est.shape == mixture.shape and info["nfe"] == 1 and info["rtf"] > 0
    from ddtse.audio.io import resample

    est16, _ = ext.extract(resample(mixture, 8000, 16000), resample(enrollment, 8000, 16000), 16000)
    assert est16.shape[0] == resample(mixture, 8000, 16000).shape[0]
    with pytest.raises(DdtseError, match="needs an enrollment"):
        ext.extract(mixture)
    with pytest.raises(DdtseError, match="holds a 'discriminative' model, but a ddtse model is needed"):
        Extractor.load(exp / "checkpoints" / "last.ckpt", expect="ddtse")


class Evil:
    """Unpickling it runs ``touch <path>``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, ("touch " + self.path,))


def test_foreign_and_malicious_checkpoints_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not switch weights_only off
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(DdtseError, match="not a ddtse checkpoint"):
        load_checkpoint(tmp_path / "foreign.ckpt")

    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"ddtse_system": "x", "state_dict": Evil(tmp_path / "pwned")}, f)
    torch.save({"ddtse_system": "x", "state_dict": Evil(tmp_path / "pwned")}, tmp_path / "evil_zip.ckpt")
    for name in ("evil.ckpt", "evil_zip.ckpt"):
        with pytest.raises(DdtseError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert name in message and "could execute code" in message and message.endswith("it was not loaded")
        assert "weights_only=False" not in message and "\n" not in message
    assert not (tmp_path / "pwned").exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # restored after the load
    with pytest.raises(DdtseError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(DdtseError, match=r"empty.ckpt is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.ckpt")
    torch.save({"ddtse_system": "x", "state_dict": {"w": torch.zeros(1000)}}, tmp_path / "whole.ckpt")
    data = (tmp_path / "whole.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DdtseError, match="cut.ckpt: the file is truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.ckpt")


def test_resume_refuses_planted_pickle_and_truncated_checkpoint(trained, corpus, tmp_path, monkeypatch, capsys):
    """A planted last.ckpt is not unpickled on resume, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."""
    exp, _ = trained
    copy = tmp_path / "planted"
    shutil.copytree(exp, copy)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    last = copy / "checkpoints" / "last.ckpt"
    torch.save({"ddtse_system": "discriminative", "state_dict": {}, "global_step": 1,
                "payload": Evil(tmp_path / "pwned")}, last)
    with pytest.raises(DdtseError, match="cannot resume: refused to load last checkpoint .*it was not loaded"):
        run_training(tiny_config(corpus), copy)
    assert not (tmp_path / "pwned").exists()
    data = (exp / "checkpoints" / "last.ckpt").read_bytes()
    last.write_bytes(data[: len(data) // 3])
    assert run_cli(train_main, ["--config", str(_write_config(tiny_config(corpus), tmp_path)),
                                "--out_dir", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated or corrupt" in err[0] and str(last) in err[0] and "--no_resume" in err[0]


def _write_config(cfg: dict, folder: Path, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_kill_mid_epoch_keeps_step_checkpoint_and_resume_says_so(corpus, tmp_path, monkeypatch, capsys):
    """last.ckpt is written every system.checkpoint_every_n_steps steps, not only at epoch ends."""
    from ddtse.systems.base import ExtractionSystem

    cfg = tiny_config(corpus)
    cfg["system"]["checkpoint_every_n_steps"] = 2
    cfg["trainer"].update({"limit_train_batches": 4, "max_epochs": 2})
    original = ExtractionSystem.training_step

    def dies_at_step_3(self, batch, batch_idx):
        if self.global_step >= 3:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ExtractionSystem, "training_step", dies_at_step_3)
    exp = tmp_path / "exp"
    with pytest.raises(RuntimeError, match="killed"):
        run_training(cfg, exp)
    last = exp / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 2
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["last.ckpt"]
    monkeypatch.setattr(ExtractionSystem, "training_step", original)
    capsys.readouterr()
    trainer = run_training(cfg, exp)
    assert f"resuming from {last} at step 2 (epoch 0)" in capsys.readouterr().out
    assert trainer.global_step == 8 and load_checkpoint(last)["global_step"] == 8
    curves = json.loads((exp / "training_curves.json").read_text())
    assert [e for e, _ in curves["val/si_sdr"]] == [0, 1]


def test_unwritable_out_dir_is_one_line(corpus, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = _write_config(tiny_config(corpus), tmp_path)
    assert run_cli(train_main, ["--config", str(config), "--out_dir", str(blocker / "exp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to the experiment folder" in err[0]
    assert not list(tmp_path.glob("file*/**/config.yaml"))


def test_train_cli_refuses_config_typos_and_wrong_types(corpus, tmp_path, capsys):
    config = _write_config(tiny_config(corpus), tmp_path)
    cases = {
        "system.lrr=5": "unknown config key system.lrr (did you mean system.lr?)",
        "data.batch_size=four": "data.batch_size must be an int, got 'four'",
        "trainer.max_epochs=x": "trainer.max_epochs must be an int or null, got 'x'",
        "trainer.max_epoch=3": "did you mean trainer.max_epochs?",
        "data.train.segment_secs=1": "did you mean data.train.segment_seconds?",
        "datta.x=1": "unknown config key datta (did you mean data?)",
        "model.HH=3": "did you mean model.H?",
    }
    for override, message in cases.items():
        assert run_cli(train_main, ["--config", str(config), "--out_dir", str(tmp_path / "exp"), override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (override, err)
    assert not (tmp_path / "exp").exists()


def _infer(argv):
    return run_cli(infer_main, argv + ["--quiet"])


def test_infer_cli_modes_and_bad_inputs(trained, corpus, tmp_path, capsys):
    exp, _ = trained
    ckpt = str(exp / "checkpoints" / "last.ckpt")
    test = corpus / "wav8k" / "min" / "test"
    mix = sorted((test / "mix_both").glob("*.wav"))[0]
    enr = test / "s1" / mix.name
    out = tmp_path / "one.wav"
    assert _infer(["--ckpt", ckpt, "--mixture", str(mix), "--enrollment", str(enr), "--output", str(out)]) == 0
    assert sf.info(out).frames == sf.info(mix).frames
    first = sf.read(out)[0]
    # no silent overwrite; with --overwrite the same seed gives the same output
    assert _infer(["--ckpt", ckpt, "--mixture", str(mix), "--enrollment", str(enr), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _infer(["--ckpt", ckpt, "--mixture", str(mix), "--enrollment", str(enr), "--output", str(out),
                   "--overwrite"]) == 0
    np.testing.assert_array_equal(sf.read(out)[0], first)

    stereo = tmp_path / "stereo.wav"
    data = sf.read(mix)[0]
    sf.write(stereo, np.stack([data, data], 1), 8000)
    cases = {
        "missing": (["--mixture", str(tmp_path / "nope.wav"), "--enrollment", str(enr), "--output",
                     str(tmp_path / "x.wav")], "not found"),
        "stereo": (["--mixture", str(stereo), "--enrollment", str(enr), "--output", str(tmp_path / "s.wav")],
                   "--channel"),
        "no_enrollment": (["--mixture", str(mix), "--output", str(tmp_path / "n.wav")], "needs an enrollment"),
        "two_sources": (["--mixture", str(mix), "--input_dir", str(test)], "exactly one input"),
    }
    for name, (argv, message) in cases.items():
        assert _infer(["--ckpt", ckpt] + argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (name, err)
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "s.wav").exists()
    assert _infer(["--ckpt", ckpt, "--mixture", str(stereo), "--channel", "1", "--enrollment", str(enr),
                   "--output", str(tmp_path / "s.wav")]) == 0

    for text in ("", "id,mixture\n"):  # zero bytes, or a header without rows
        (tmp_path / "empty.csv").write_text(text)
        assert _infer(["--ckpt", ckpt, "--list", str(tmp_path / "empty.csv"), "--out_dir", str(tmp_path / "e")]) == 2
        assert "list file is empty" in capsys.readouterr().err
    bad_list = tmp_path / "bad.csv"
    bad_list.write_text("name,mixture\na,b.wav\n")
    assert _infer(["--ckpt", ckpt, "--list", str(bad_list), "--out_dir", str(tmp_path / "l")]) == 2
    assert "lacks column(s) id" in capsys.readouterr().err
    good_list = tmp_path / "good.csv"
    good_list.write_text(f"id,mixture,enrollment\nspk/a,{mix},{enr}\n")
    assert _infer(["--ckpt", ckpt, "--list", str(good_list), "--out_dir", str(tmp_path / "l")]) == 0
    assert (tmp_path / "l" / "spk" / "a.wav").is_file() and (tmp_path / "l" / "inference.json").is_file()


def test_infer_librimix_split_batched(trained, corpus, tmp_path):
    exp, _ = trained
    split = corpus / "wav8k" / "min" / "test"
    assert _infer(["--ckpt", str(exp / "checkpoints" / "last.ckpt"), "--split", str(split),
                   "--out_dir", str(tmp_path / "b"), "--batch_size", "3"]) == 0
    outs = sorted((tmp_path / "b").rglob("*.wav"))
    assert len(outs) == 4  # 2 mixtures x 2 targets, named s<k>/<mixture_ID>.wav
    for out in outs:
        ref = split / out.parent.name / out.name
        assert sf.info(out).frames == sf.info(ref).frames


def test_train_cli_reports_bad_config_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config file not found" in proc.stderr


@pytest.mark.skipif(not shutil.which("torchrun", path=os.path.dirname(sys.executable)), reason="no torchrun")
def test_two_process_ddp_on_cpu(corpus, tmp_path):
    """The multi-GPU path (Lightning DDP under torchrun) with the gloo backend on CPU."""
    cfg = tiny_config(corpus)
    cfg["trainer"].update({"devices": 2, "strategy": "ddp", "limit_train_batches": 2})
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(REPO / "train.py"),
                           "--config", str(tmp_path / "ddp.yaml"), "--out_dir", str(tmp_path / "exp")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "exp" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2  # 4 items / (2 processes x batch 2) = 1 step per epoch... limited to 2


def test_best_checkpoint_is_the_monitored_best_and_survives_a_move(trained, tmp_path):
    from ddtse.checkpoint import best_checkpoint

    exp, _ = trained
    state = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    [recorded] = [v["best_model_path"] for k, v in state["callbacks"].items()
                  if k.startswith("ModelCheckpoint") and v.get("monitor")]
    assert best_checkpoint(exp) == exp / "checkpoints" / Path(recorded).name
    moved = tmp_path / "moved"
    shutil.copytree(exp, moved)
    assert best_checkpoint(moved) == moved / "checkpoints" / Path(recorded).name  # found by name, not by the old path
    (moved / "checkpoints" / Path(recorded).name).unlink()
    assert best_checkpoint(moved) == moved / "checkpoints" / "last.ckpt"  # the best file is gone: last
    with pytest.raises(DdtseError, match="last checkpoint"):
        best_checkpoint(tmp_path / "nothing")
