"""The command line (issue 14): the ``ddtse`` command and ``python -m ddtse`` (same verbs as the
scripts), every script running from a checkout without an installed package, and infer.py's
generic sampler options (``--opt NAME=VALUE``; --K/--N/--snr/--t_start/--seed as aliases); one
spelling of option names (underscores inside, --out_dir for a folder, --output for a file; the old
spellings still parse but never show in --help); the recipes' option parser (tools/parse_options.sh)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.cli.main import VERBS, main as ddtse_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["train.py", "infer.py", "calc_metrics.py", "slicer.py", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "data").glob("*.py"))]
HYPHENATED = re.compile(r"--[a-z0-9]+-[a-z0-9]")  # an option with a hyphen inside its name
OLD_NAMES = re.compile(r"--out\b|--base_dir\b|--enroll_map\b|--librimix_split\b|--splits\b|--set\b")  # replaced by --out_dir / --output, --enrollment_map, --split


def assert_one_spelling(help_text: str, where: str) -> None:
    assert help_text.startswith("usage: "), help_text[:200]
    assert not HYPHENATED.findall(help_text), f"{where} --help shows hyphenated options {HYPHENATED.findall(help_text)}"
    assert not OLD_NAMES.findall(help_text), f"{where} --help shows old option names {OLD_NAMES.findall(help_text)}"


# -- the ddtse command -------------------------------------------------------------------------
def test_help_lists_every_verb_with_one_line(capsys):
    assert ddtse_main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("train", "infer", "score", "prepare", "slice", "report", "evaluate"):
        assert f"  {verb} " in out
    if (REPO / "ddtse" / "cli" / "evaluate_speaker.py").is_file():
        assert "  evaluate_speaker " in out
    assert ddtse_main([]) == 2  # no verb: usage, exit 2


def test_unknown_verb(capsys):
    assert ddtse_main(["trian"]) == 2
    assert "unknown verb 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_is_its_script(verb, capsys):
    """``ddtse VERB --help`` prints the script's own help (the same parser)."""
    with pytest.raises(SystemExit) as exit_info:
        ddtse_main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    assert_one_spelling(out, f"ddtse {verb}")
    if verb == "train":
        assert "--config" in out and "overrides" in out
    if verb == "infer":
        assert "--ckpt" in out and "--opt NAME=VALUE" in out


def test_verb_errors_and_exit_codes_are_the_scripts(tmp_path, capsys):
    # a DdtseError is one line and exit 2, as in `python train.py`
    assert ddtse_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_python_dash_m_ddtse(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "ddtse", "--help"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "infer" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "ddtse", "infer", "--help"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "usage: ddtse infer" in proc.stdout


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\nddtse = "ddtse.cli.main:main"' in text


# -- scripts run from a checkout, from any folder, without an installed package ----------------
RUNNER = """
import runpy, sys
from pathlib import Path
# the venv's site-packages (numpy, torch, ...) WITHOUT its .pth files: the editable ddtse is not importable
sys.path.append(str(Path(sys.executable).parents[1] / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"))
try:
    import ddtse
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("ddtse is importable without the checkout: the test proves nothing")
script = sys.argv[1]
sys.path.insert(0, str(Path(script).resolve().parent))  # what `python SCRIPT` does
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_without_installed_package(script, tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([sys.executable, "-S", str(runner), str(REPO / script), "--help"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    if "the test proves nothing" in proc.stderr:
        pytest.skip("ddtse is importable without its checkout here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
    assert_one_spelling(proc.stdout, script)


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.startswith("data/")])
def test_data_scripts_put_the_repo_root_on_sys_path(script):
    text = (REPO / script).read_text()
    insert = text.find("sys.path.insert(0, str(Path(__file__).resolve().parents[1]))")
    assert 0 <= insert < text.find("from ddtse"), f"{script} must put the repo root on sys.path before importing ddtse"


# -- infer.py: generic sampler options ---------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ckpts = {kind: str(make_checkpoint(root / f"{kind}.ckpt", kind)) for kind in ("tsb", "ddtse", "sgmse")}
    rng = np.random.default_rng(0)
    sf.write(root / "mix.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 8000)
    sf.write(root / "enr.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    return root, ckpts


def _infer(setup, tmp_path, capsys, kind, *extra):
    root, ckpts = setup
    out = tmp_path / str(len(list(tmp_path.iterdir()))) / "est.wav"  # the same item id every time (per-item noise)
    out.parent.mkdir()
    code = run_cli(infer_main, ["--ckpt", ckpts[kind], "--mixture", str(root / "mix.wav"), "--enrollment",
                                str(root / "enr.wav"), "--output", str(out), "--device", "cpu", "--quiet", *extra])
    err = capsys.readouterr().err
    return code, err, (sf.read(out, dtype="float32")[0] if code == 0 else None)


@pytest.mark.usefixtures("one_thread")
def test_opt_is_the_same_as_the_alias(setup, tmp_path, capsys):
    code, _, a = _infer(setup, tmp_path, capsys, "ddtse", "--K", "2", "--seed", "5")
    assert code == 0
    code, _, b = _infer(setup, tmp_path, capsys, "ddtse", "--opt", "K=2", "--opt", "seed=5")
    assert code == 0 and np.array_equal(a, b)
    code, _, c = _infer(setup, tmp_path, capsys, "sgmse", "--opt", "N=2", "--snr", "0.3")
    assert code == 0 and c.shape == a.shape


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("kind,args,message", [
    ("ddtse", ["--opt", "steps=3"], "unknown option 'steps' for system 'ddtse' (valid options: K, seed, t_start)"),
    ("ddtse", ["--N", "3"], "unknown option 'N' for system 'ddtse'"),
    ("sgmse", ["--K", "3"], "unknown option 'K' for system 'sgmse' (valid options: N, corrector_steps, seed, snr)"),
    ("tsb", ["--K", "3"], "unknown option 'K' for system 'discriminative' (valid options: none)"),
    ("ddtse", ["--opt", "K=abc"], "--opt K=abc: K takes an int"),
    ("ddtse", ["--opt", "K"], "--opt takes NAME=VALUE"),
    ("ddtse", ["--opt", "K=-1"], "option 'K' of system 'ddtse' must lie in"),
    ("ddtse", ["--K", "2", "--opt", "K=3"], "disagree"),
    ("tsb", ["--refine_ckpt", "SGMSE"], "cannot refine an initial estimate"),
])
def test_bad_options_are_one_clear_error(setup, tmp_path, capsys, kind, args, message):
    args = [setup[1]["sgmse"] if a == "SGMSE" else a for a in args]
    code, err, _ = _infer(setup, tmp_path, capsys, kind, *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1, err


@pytest.mark.usefixtures("one_thread")
def test_deterministic_extractor_takes_the_seed_and_refiner_takes_the_options(setup, tmp_path, capsys):
    code, _, _ = _infer(setup, tmp_path, capsys, "tsb", "--seed", "3")  # ignored, not refused
    assert code == 0
    root, ckpts = setup
    code, _, _ = _infer(setup, tmp_path, capsys, "tsb", "--refine_ckpt", ckpts["ddtse"], "--opt", "K=1",
                        "--t_start", "0.5")
    assert code == 0


# -- one spelling per option: the old ones still parse, --help shows only the new ---------------
def _load(relpath: str):
    """A script outside the package (benchmarks/, recipes/*/local/) as a module."""
    spec = importlib.util.spec_from_file_location(Path(relpath).stem, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parser_of(name: str):
    """parse_args(argv) of one command, by name."""
    if name in ("prepare", "make_extr_lists", "make_demo_corpus"):
        import ddtse.cli.prepare as prepare

        return getattr(prepare, f"{name.replace('prepare', 'prepare_libri2mix')}_parser")().parse_args
    if name.endswith(".py"):
        return _load(name).parse_args
    return importlib.import_module(f"ddtse.cli.{name}").parse_args


LEGACY = [  # command, old spelling, new spelling, what the new one must give
    ("prepare",
     ["--root", "R", "--out", "L", "--sample-rate", "8000", "--enrollment-map", "test=M", "--no-audio-check"],
     ["--root", "R", "--out_dir", "L", "--sample_rate", "8000", "--enrollment_map", "test=M", "--no_audio_check"],
     {"out_dir": "L", "sample_rate": 8000, "enrollment_map": ["test=M"], "no_audio_check": True}),
    ("prepare", ["--root=R", "--out=L", "--sample-rate=8000", "--enrollment-map=test=M"],
     ["--root", "R", "--out_dir", "L", "--sample_rate", "8000", "--enrollment_map", "test=M"],
     {"out_dir": "L", "sample_rate": 8000, "enrollment_map": ["test=M"]}),
    ("make_extr_lists", ["--source", "S", "--out", "list.txt", "--snr-max", "3"],
     ["--source", "S", "--output", "list.txt", "--snr_max", "3"], {"output": "list.txt", "snr_max": 3.0}),
    ("make_demo_corpus", ["--out", "D"], ["--out_dir", "D"], {"out_dir": "D"}),
    ("train", ["--base_dir", "X", "system.lr=1"], ["--out_dir", "X", "system.lr=1"],
     {"out_dir": "X", "overrides": ["system.lr=1"]}),
    ("train", ["--base_dir=X"], ["--out_dir", "X"], {"out_dir": "X"}),
    ("slicer", ["in.wav", "--out", "X"], ["in.wav", "--out_dir", "X"], {"out_dir": "X", "inputs": ["in.wav"]}),
    ("report", ["--exp_dir", "E", "--out", "R.md"], ["--exp_dir", "E", "--output", "R.md"], {"output": "R.md"}),
    ("evaluate_speaker", ["--ckpt", "c", "--data", "d", "--out", "e.json"],
     ["--ckpt", "c", "--data", "d", "--output", "e.json"], {"output": "e.json"}),
    ("benchmarks/bench_dataloader.py", ["--batch-size", "2", "--num-workers", "0", "--segment-seconds", "1",
                                        "--enrollment-seconds", "2"],
     ["--batch_size", "2", "--num_workers", "0", "--segment_seconds", "1", "--enrollment_seconds", "2"],
     {"batch_size": 2, "num_workers": 0, "segment_seconds": 1.0, "enrollment_seconds": 2.0}),
    # one spelling for the enrollment map and for a split (issue 24)
    ("infer", ["--ckpt", "c", "--librimix_split", "S", "--enroll_map", "M", "--out_dir", "o"],
     ["--ckpt", "c", "--split", "S", "--enrollment_map", "M", "--out_dir", "o"], {"split": "S", "enrollment_map": "M"}),
    ("score", ["--librimix_split=S", "--enroll_map=M", "--enhanced_dir", "e"],
     ["--split", "S", "--enrollment_map", "M", "--enhanced_dir", "e"], {"split": "S", "enrollment_map": "M"}),
    ("report", ["--exp_dir", "E", "--librimix_split", "S", "--enroll_map", "M"],
     ["--exp_dir", "E", "--split", "S", "--enrollment_map", "M"], {"split": "S", "enrollment_map": "M"}),
    ("evaluate", ["--ckpt", "c", "--set", "valid", "--out_dir", "o"], ["--ckpt", "c", "--split", "valid", "--out_dir", "o"],
     {"split": "valid"}),
    ("prepare", ["--root", "R", "--out_dir", "L", "--splits", "dev", "test"],
     ["--root", "R", "--out_dir", "L", "--split", "dev", "test"], {"split": ["dev", "test"]}),
    ("benchmarks/bench_long_file.py", ["--out", "r/x"], ["--output", "r/x"], {"output": "r/x"}),
    ("recipes/focused/local/make_demo.py", ["--out", "D"], ["--out_dir", "D"], {"out_dir": "D"}),
]


@pytest.mark.parametrize("name,old,new,expected", LEGACY, ids=[f"{c[0]}-{i}" for i, c in enumerate(LEGACY)])
def test_old_spelling_parses_to_the_new_namespace(name, old, new, expected):
    parse = _parser_of(name)
    got = parse(new)
    assert {k: getattr(got, k) for k in expected} == expected
    assert parse(old) == got


@pytest.mark.parametrize("name", sorted({c[0] for c in LEGACY if c[0].endswith(".py")}))
def test_other_scripts_help_has_one_spelling(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser_of(name)(["--help"])
    assert exit_info.value.code == 0
    assert_one_spelling(capsys.readouterr().out, name)


def test_legacy_rewrite_only_touches_option_names():
    from ddtse.cli import rename_legacy_options

    aliases = {"--out": "--out_dir", "--sample-rate": "--sample_rate"}
    argv = ["a-b", "--out", "--out.wav", "--outx", "--sample-rate=8000", "--title", "x=--out", "--", "--out"]
    assert rename_legacy_options(argv, aliases) == [
        "a-b", "--out_dir", "--out.wav", "--outx", "--sample_rate=8000", "--title", "x=--out", "--", "--out"]
    assert argv[1] == "--out"  # the caller's list is left alone


# -- recipes: tools/parse_options.sh --------------------------------------------------------------
def _bash(args, cwd, **kw):
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60, **kw)


def test_parse_options_sets_defaults_and_refuses_unknown(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text(f"""#!/usr/bin/env bash
# A recipe.
#   run.sh --stop_stage 2
set -euo pipefail
stage=0
stop_stage=4     # last stage
out_dir=exp
. {REPO}/tools/parse_options.sh
later=1
echo "stage=$stage stop_stage=$stop_stage out_dir=$out_dir rest=$*"
""")
    proc = _bash([script, "--stage", "1", "--stop-stage=3", "--out_dir", "a b", "tail"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "stage=1 stop_stage=3 out_dir=a b rest=tail"
    proc = _bash([script, "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["A recipe.", "  run.sh --stop_stage 2", "options (defaults):", "  --stage 0",
                                        "  --stop_stage 4     # last stage", "  --out_dir exp"]
    proc = _bash([script, "--later", "2"], tmp_path)  # defined after the options: not an option
    assert proc.returncode == 2 and "unknown option --later" in proc.stderr
    proc = _bash([script, "--stage"], tmp_path)
    assert proc.returncode == 2 and "--stage needs a value" in proc.stderr


def test_focused_recipe_help_and_unknown_option(tmp_path):
    env = {**os.environ, "DDTSE_PYTHON": "/nonexistent/python"}  # nothing may get as far as the environment
    for cwd, script in ((tmp_path, REPO / "recipes/focused/run.sh"), (REPO / "recipes/focused", "./run.sh")):
        proc = _bash([script, "--help"], cwd, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "Per-speaker focused extractor" in proc.stdout and "Stages" in proc.stdout
        for option in ("--stage 0", "--stop_stage 7", "--config conf/focused/tiny.yaml",
                       "--refiner_config conf/focused/ddtse_refiner_tiny.yaml", "--t_start 0.5", "--K 3",
                       "--speaker demo_target",
                       "--data datasets/demo_focused", "--exp exp/focused_tiny", "--demo true", "--chunk_seconds 4",
                       "--overlap_seconds 1", "--device cpu", "--seed 0"):
            assert f"\n  {option}" in proc.stdout, option
        assert not HYPHENATED.findall(proc.stdout)
    proc = _bash([REPO / "recipes/focused/run.sh", "--bogus", "1"], tmp_path, env=env)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr, proc.stderr
    proc = _bash([REPO / "recipes/focused/run.sh", "--stage", "1", "stray"], tmp_path, env=env)
    assert proc.returncode == 2 and "unexpected argument 'stray'" in proc.stderr, proc.stderr
