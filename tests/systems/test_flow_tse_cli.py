"""The flow systems through the ordinary commands (issue 23): train.py trains the MR predictor,
AD-FlowTSE and MeanFlow-TSE on a tiny corpus; infer.py runs them with --opt nfe=1 and nfe=2 and
inference.json reports the NFE; a bad option is one line (exit 2) before any item is written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_ckpt import make_tiny_corpus, tiny_config  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.cli.train import main as train_main  # noqa: E402
from ddtse.checkpoint import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
MR_ENCODER = {"name": "ecapa_tdnn", "emb_dim": 16, "n_fft": 128, "win_length": 100, "hop_length": 40, "n_mels": 20,
              "channels": 16, "se_channels": 8, "attention_channels": 8}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory)


def _config(kind: str, root: Path) -> dict:
    if kind == "mr_predictor":
        cfg = {"seed": 0, "model": {"name": "mr_predictor", "encoder": MR_ENCODER},
               "system": {"name": "mr_predictor", "lr": 1e-3, "ema_decay": 0.0}}
    else:
        cfg = tiny_config(kind, 8000)
        cfg["system"]["val_opts"] = {"nfe": 1, "mr_source": "oracle"} if kind == "adflow_tse" else {"nfe": 1}
        cfg["system"].pop("alpha_schedule", None)  # the curriculum spans the run's own length
    split = lambda s, **kw: {"name": "libri2mix", "root": str(root), "split": s, "mode": "min",  # noqa: E731
                             "mixture_type": "mix_both", **kw}
    cfg["data"] = {"sample_rate": 8000, "batch_size": 2, "valid_batch_size": 1, "num_workers": 0,
                   "train": split("train-100", segment_seconds=0.5, enrollment_seconds=1.0),
                   "valid": split("dev", max_items=1)}
    cfg["trainer"] = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "accelerator": "cpu",
                      "devices": 1, "enable_progress_bar": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1}
    cfg["system"]["val_metric_items"] = 0
    return cfg


def _train(kind: str, root: Path, tmp_path: Path) -> Path:
    config = tmp_path / f"{kind}.yaml"
    config.write_text(yaml.safe_dump(_config(kind, root)))
    assert run_cli(train_main, ["--config", str(config), "--out_dir", str(tmp_path / kind)]) == 0
    ckpt = tmp_path / kind / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt)["ddtse_system"] == kind
    return ckpt


def _infer(ckpt: Path, corpus: Path, out: Path, *opts: str) -> int:
    split = corpus / "wav8k" / "min" / "test"
    argv = ["--ckpt", str(ckpt), "--librimix_split", str(split), "--mixture_type", "mix_both",
            "--out_dir", str(out), "--quiet", "--limit", "2"]
    for opt in opts:
        argv += ["--opt", opt]
    return run_cli(infer_main, argv)


def test_train_and_infer_each_flow_system_reporting_nfe(corpus, tmp_path, capsys):
    mr = _train("mr_predictor", corpus, tmp_path)
    meanflow = _train("meanflow_tse", corpus, tmp_path)
    adflow = _train("adflow_tse", corpus, tmp_path)
    for nfe in (1, 2):
        out = tmp_path / f"mf_nfe{nfe}"
        assert _infer(meanflow, corpus, out, f"nfe={nfe}") == 0
        summary = json.loads((out / "inference.json").read_text())
        assert summary["nfe_per_item"] == nfe and summary["written"] == 2
        out = tmp_path / f"ad_nfe{nfe}"
        assert _infer(adflow, corpus, out, f"nfe={nfe}", f"mr_predictor={mr}") == 0
        assert json.loads((out / "inference.json").read_text())["nfe_per_item"] == nfe
    assert len(list((tmp_path / "ad_nfe1").rglob("*.wav"))) == 2
    capsys.readouterr()
    # the predictor without a checkpoint: one line, exit 2, nothing written
    assert _infer(adflow, corpus, tmp_path / "refused", "mr_source=predictor") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mr_source predictor needs a predictor checkpoint" in err[0]
    assert not list((tmp_path / "refused").rglob("*.wav"))
    assert _infer(meanflow, corpus, tmp_path / "bad", "nfe=0") == 2
    assert "nfe" in capsys.readouterr().err
