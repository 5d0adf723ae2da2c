"""The README's main command at tiny size, end to end (corpus -> train -> extract -> score -> table)."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_recipe_tiny_end_to_end(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        ["bash", "recipes/demo/run.sh", "--size", "tiny", "--corpus_dir", str(tmp_path / "corpus"),
         "--exp_root", str(tmp_path / "exp")],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    exp = tmp_path / "exp" / "demo_tiny"
    results = (exp / "RESULTS.md").read_text()
    for row in ("| mixture |", "front-end", "DDTSE stage 1 (K=3)", "DDTSE stage 2 (K=3)", "DDTSE stage 2 (K=0)",
                "DDTSE stage 2 (K=10)", "front-end + DDTSE", "SGMSE+ baseline"):
        assert row in results, row
    assert "not run" not in results
    # NFE as the samplers define them: DDTSE 1 + K, SGMSE+ PC 2 N, front-end 1, chain 1 + K
    lines = {line.split("|")[1].strip(): line for line in results.splitlines() if line.startswith("| ")}
    nfe = {name: line.split("|")[6].strip() for name, line in lines.items()}
    assert nfe["DDTSE stage 2 (K=3)"] == "4" and nfe["DDTSE stage 2 (K=0)"] == "1"
    assert nfe["DDTSE stage 2 (K=10)"] == "11" and nfe["SGMSE+ baseline (PC, N=30)"] == "60"
    assert nfe["front-end + DDTSE (t_start=1.0)"] == "4"
    assert list((exp / "plots").glob("*.png"))
    for name in ("frontend", "ddtse_stage1", "ddtse_stage2", "sgmse"):
        assert (exp / name / "config.yaml").is_file() and (exp / name / "checkpoints" / "last.ckpt").is_file()
    for name in ("ddtse_stage2", "ddtse_stage2_K0", "ddtse_stage2_K10"):
        assert (exp / "scores" / "test" / name / "per_utt.csv").is_file()
    # every command is logged so that it runs as it stands (the speaker clue is one quoted argument),
    # with its wall time beside it
    import shlex

    logged = (exp / "commands.txt").read_text().splitlines()
    assert logged and all(shlex.split(line) for line in logged)
    speaker = [arg for line in logged for arg in shlex.split(line) if arg.startswith("model.speaker=")]
    assert speaker and all(arg.startswith("model.speaker={name: pretrained, ckpt: ") for arg in speaker)
    timings = [line.split("\t") for line in (exp / "timings.tsv").read_text().splitlines()]
    assert [cmd for _, cmd in timings] == logged and all(seconds.isdigit() for seconds, _ in timings)
