"""recipes/libri2mix/run.sh stage 1 with --speaker_config: trains a speaker encoder on the tree's
training sources (YAML-valued overrides through bash) and prints its test-speaker EER."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data"))

from data_helpers import write_tree  # noqa: E402


def test_speaker_encoder_stage(tmp_path):
    root = tmp_path / "Libri2Mix"
    for split in ("train-100", "dev", "test"):
        write_tree(root, rate=8000, split=split) if split == "train-100" else _copy_split(root, split)
    config = tmp_path / "spk.yaml"
    config.write_text((REPO / "conf" / "demo" / "speaker_encoder.yaml").read_text())
    overrides = ("model.channels=8 model.se_channels=4 model.attention_channels=4 model.n_fft=256 "
                 "model.win_length=200 model.hop_length=80 model.n_mels=20 data.batch_size=4 "
                 "data.train.segment_seconds=0.4 trainer.max_epochs=1 trainer.limit_train_batches=2 "
                 "trainer.enable_progress_bar=false")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", "recipes/libri2mix/run.sh", "--librimix_root", str(root), "--sample_rate", "8000",
         "--exp_root", str(tmp_path / "exp"), "--tag", "t", "--stage", "1", "--stop_stage", "1",
         "--frontend_config", "", "--speaker_config", str(config), "--speaker_overrides", overrides],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    exp = tmp_path / "exp" / "t" / "speaker_encoder"
    assert (exp / "checkpoints" / "last.ckpt").is_file()
    result = json.loads((exp / "eer_test.json").read_text())
    assert f"EER {result['eer']:.2f} % on {result['trials']} trials" in proc.stdout
    assert (exp / "trials_test.txt").read_text().count("\n") == result["trials"]


def _copy_split(root: Path, split: str) -> None:
    import shutil

    write_tree(root / ".tmp", rate=8000, split=split)
    src = root / ".tmp" / "wav8k" / "min"
    shutil.copytree(src / split, root / "wav8k" / "min" / split)
    for csv in (src / "metadata").iterdir():
        shutil.copy(csv, root / "wav8k" / "min" / "metadata" / csv.name.replace("dev-clean", f"{split}-clean"))
    shutil.rmtree(root / ".tmp")
