"""benchmarks/bench_nfe.py (issue 23): its arguments are checked in one line each before any training,
and the table reports what the rows hold."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ddtse.cli import run_cli
from ddtse.errors import DdtseError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_ckpt import make_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_nfe", REPO / "benchmarks" / "bench_nfe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nfe_list_parsing(bench):
    assert bench.parse_nfe("1 2 4") == [1, 2, 4] and bench.parse_nfe("1,3") == [1, 3]
    for bad in ("0 2", "1 1", "", "two"):
        with pytest.raises(DdtseError, match="--nfe"):
            bench.parse_nfe(bad)


def test_bad_arguments_are_one_line_before_any_work(bench, tmp_path, capsys):
    corpus = tmp_path / "Libri2Mix"
    (corpus / "wav16k" / "min" / "test" / "mix_both").mkdir(parents=True)
    meanflow = make_checkpoint(tmp_path / "mf.ckpt", "meanflow_tse")
    common = ["--exp_dir", str(tmp_path / "exp"), "--out_dir", str(tmp_path / "results")]
    cases = {
        "no corpus": (["--corpus", str(tmp_path / "none")], "no Libri2Mix test split"),
        "nfe": (["--corpus", str(corpus), "--nfe", "1 0"], "--nfe takes positive integers"),
        "items": (["--corpus", str(corpus), "--items", "0"], "--items must be >= 1"),
        "steps": (["--corpus", str(corpus), "--steps", "1"], "--steps must be >= 2"),
        "wrong ckpt": (["--corpus", str(corpus), "--ddtse_ckpt", str(meanflow), "--meanflow_ckpt", str(meanflow)],
                       "holds a 'meanflow_tse' model, not 'ddtse'"),
        "missing ckpt": (["--corpus", str(corpus), "--meanflow_ckpt", str(tmp_path / "x.ckpt")], "x.ckpt"),
    }
    for name, (argv, message) in cases.items():
        assert run_cli(bench.main, argv + common) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (name, err)
    assert not (tmp_path / "exp").exists() and not (tmp_path / "results").exists()


def test_markdown_rows(bench):
    import argparse

    rows = [{"system": "MeanFlow-TSE", "nfe": 1.0, "si_sdri": 3.456, "pesq": 1.5, "selected": 0.8, "rtf": 0.05,
             "items": 100},
            {"system": "DDTSE stage 2", "nfe": 4.0, "si_sdri": None, "pesq": None, "selected": None, "rtf": None,
             "items": 100}]
    md = bench.markdown(argparse.Namespace(device="cpu"), rows, {"MeanFlow-TSE": 1000}, ["python train.py"], ["--items", "100"])
    assert "| MeanFlow-TSE | 1 | 3.46 | 1.50 | 80.0 | 0.050 | 100 |" in md
    assert "| DDTSE stage 2 | 4 | – | – | – | – | 100 |" in md
    assert "python benchmarks/bench_nfe.py --items 100" in md and "MeanFlow-TSE 1000" in md
