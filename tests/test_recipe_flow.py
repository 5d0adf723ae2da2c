"""recipes/libri2mix/run.sh's optional flow stage (issue 23): bad flow options are one line, exit 2,
before anything runs."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_flow_stage_options_are_checked_up_front(tmp_path):
    cases = {("--flow_nfe", "1 0"): "--flow_nfe takes positive integers, got '0'",
             ("--flow_config", "conf/none.yaml"): "--flow_config not found: conf/none.yaml",
             ("--mr_config", "conf/mr_predictor.yaml"): "--mr_config trains AD-FlowTSE's predictor: give --flow_config too"}
    for args, message in cases.items():
        proc = subprocess.run(["bash", "recipes/libri2mix/run.sh", "--librimix_root", str(tmp_path), *args,
                               "--exp_root", str(tmp_path / "exp")], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}", (args, proc.stderr)
        assert not (tmp_path / "exp").exists()
