"""Property-based fuzzing of the audio loaders and of infer.py with generated input files (issue 15).

Generated audio: 0-3 s, 8-48 kHz, 1-3 channels, int16 or float32 files, noise / silence / loud /
NaN / Inf. Properties: the loaders (ddtse/audio/io.py) either return finite audio of the file's
length or raise DdtseError; ``ddtse.cli.infer.main`` (through ``run_cli``) never raises, exits 0
with an output of exactly the input's length and rate, or exits 2 with one clear line and no
output. Finally a list of many generated files through ``infer.py --list``.

Profiles: "ci" (default; a few dozen examples per property, no deadline) and "long" (hundreds):
    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz_inputs.py
``FUZZ_LIST_FILES`` sets the size of the list test (default 40; the issue's check used 200):
    FUZZ_LIST_FILES=200 .venv/bin/python -m pytest tests/test_fuzz_inputs.py -k list
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.audio.io import audio_info, load_audio  # noqa: E402
from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.errors import DdtseError  # noqa: E402

_COMMON = dict(deadline=None, database=None, derandomize=False,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, **_COMMON)
settings.register_profile("long", max_examples=400, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ = settings(settings.get_profile(PROFILE if PROFILE in ("ci", "long") else "ci"))
FEW = settings(FUZZ, max_examples=max(4, FUZZ.max_examples // 3))  # the slower spectral model

RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000)
CONTENTS = ("noise", "silence", "loud", "nan", "inf")

pytestmark = pytest.mark.usefixtures("one_thread")


@st.composite
def audio_specs(draw, max_seconds: float = 3.0):
    rate = draw(st.sampled_from(RATES))
    frames = draw(st.one_of(st.just(0), st.integers(1, 300), st.integers(0, int(max_seconds * rate))))
    return {"rate": rate, "frames": frames, "channels": draw(st.integers(1, 3)),
            "dtype": draw(st.sampled_from(("int16", "float32"))), "content": draw(st.sampled_from(CONTENTS)),
            "seed": draw(st.integers(0, 2**16))}


def write_audio(path: Path, spec: dict) -> dict:
    """Write the file ``spec`` describes; returns the spec with ``finite`` (what the file really holds)."""
    rng = np.random.default_rng(spec["seed"])
    n, c = spec["frames"], spec["channels"]
    data = (0.1 * rng.standard_normal((n, c))).astype(np.float32)
    content = spec["content"]
    if content == "silence":
        data[:] = 0
    elif content == "loud":
        data *= 30
    int16 = spec["dtype"] == "int16"
    finite, bad_channel = True, None
    if content in ("nan", "inf") and n and not int16:  # an int16 file cannot hold NaN / Inf
        bad_channel = int(rng.integers(0, c))
        data[rng.integers(0, n), bad_channel] = np.nan if content == "nan" else -np.inf
        finite = False
    if int16:
        data = np.clip(data, -1, 1)
    sf.write(path, data, spec["rate"], subtype="PCM_16" if int16 else "FLOAT")
    return {**spec, "finite": finite, "bad_channel": bad_channel, "silent": not np.any(data), "rms": float(np.sqrt(np.mean(np.square(data)))) if n else 0.0}


_counter = itertools.count()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    enr = root / "enrollment.wav"
    sf.write(enr, (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 16000)
    mix = root / "mixture.wav"
    sf.write(mix, (0.1 * np.random.default_rng(1).standard_normal(4000)).astype(np.float32), 8000)
    return {"root": root, "enrollment": enr, "mixture": mix,
            "tsb": str(make_checkpoint(root / "tsb.ckpt", "tsb")), "ddtse": str(make_checkpoint(root / "ddtse.ckpt", "ddtse"))}


def _fresh(work) -> Path:
    return Path(tempfile.mkdtemp(dir=work["root"], prefix=f"ex{next(_counter)}_"))


def _run(argv, capsys) -> tuple[int, list[str]]:
    """infer.py in-process: any exception but SystemExit fails the property (a traceback)."""
    try:
        code = run_cli(infer_main, argv + ["--quiet"])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert not any("Traceback" in line for line in err)
    return code, err


@FUZZ
@given(spec=audio_specs())
def test_loaders_return_finite_audio_of_the_file_length_or_one_clear_error(work, spec):
    path = _fresh(work) / f"a.{'wav' if spec['frames'] % 2 else 'flac'}"
    if path.suffix == ".flac" and (spec["dtype"] == "float32" or spec["rate"] > 655350):
        path = path.with_suffix(".wav")
    spec = write_audio(path, spec)
    n, c = spec["frames"], spec["channels"]
    good = n > 0 and spec["finite"]
    good0 = n > 0 and spec["bad_channel"] != 0  # channel 0 alone is usable
    goodc = n > 0 and spec["bad_channel"] != c - 1
    try:
        info = audio_info(path)
    except DdtseError:  # libsndfile writes an empty FLAC it cannot read back: a clear error is right
        assert n == 0 and path.suffix == ".flac"
    else:
        assert info.frames == n and info.channels == c
    for kwargs, shape, ok in (({"multichannel": True}, (c, n), good), ({}, (n,), good and c == 1),
                              ({"channel": c - 1}, (n,), goodc)):
        try:
            data = load_audio(path, **kwargs)
        except DdtseError as exc:
            assert not ok, (kwargs, exc)
            assert str(exc) and "\n" not in str(exc)
            continue
        assert ok and data.shape == shape and data.dtype == np.float32 and np.all(np.isfinite(data))
    try:
        data = load_audio(path, 16000, channel=0)
    except DdtseError:
        assert not good0
    else:
        assert good0 and abs(data.shape[-1] - n * 16000 / spec["rate"]) <= 1 and np.all(np.isfinite(data))


@FUZZ
@given(spec=audio_specs(), pick_channel=st.booleans())
# one frame at 22.05 kHz resamples to no samples at 8 kHz (CI found it)
@example(spec={"rate": 22050, "frames": 1, "channels": 1, "dtype": "int16", "content": "noise", "seed": 0},
         pick_channel=False)
def test_infer_mixture_fuzz_tsb(work, capsys, spec, pick_channel):
    _check_mixture(work, capsys, spec, pick_channel, "tsb")


@FEW
@given(spec=audio_specs(max_seconds=0.25), pick_channel=st.booleans())
def test_infer_mixture_fuzz_spectral_model(work, capsys, spec, pick_channel):
    _check_mixture(work, capsys, spec, pick_channel, "ddtse")


def _check_mixture(work, capsys, spec, pick_channel, kind):
    d = _fresh(work)
    spec = write_audio(d / "m.wav", spec)
    out = d / "out" / "e.wav"
    argv = ["--ckpt", work[kind], "--mixture", str(d / "m.wav"), "--enrollment", str(work["enrollment"]),
            "--output", str(out)] + (["--channel", "0"] if pick_channel else [])
    code, err = _run(argv, capsys)
    good = spec["frames"] > 0 and (spec["finite"] if spec["channels"] == 1 else pick_channel and spec["bad_channel"] != 0)
    if good:
        assert code == 0, err
        info = sf.info(out)
        assert info.frames == spec["frames"] and info.samplerate == spec["rate"] and info.channels == 1
        assert np.all(np.isfinite(sf.read(out)[0]))
    else:
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert not out.exists()
    assert not list(d.rglob(".tmp_*"))


@FUZZ
@given(spec=audio_specs())
def test_infer_enrollment_fuzz(work, capsys, spec):
    d = _fresh(work)
    spec = write_audio(d / "enr.wav", spec)
    out = d / "e.wav"
    code, err = _run(["--ckpt", work["tsb"], "--mixture", str(work["mixture"]), "--enrollment", str(d / "enr.wav"),
                      "--output", str(out)], capsys)
    seconds = spec["frames"] / spec["rate"]
    good = seconds >= 1.0 and spec["bad_channel"] != 0 and spec["rms"] >= 1e-5  # channel 0 is the enrollment
    borderline = abs(seconds - 1.0) < 0.01 or 0.5e-5 < spec["rms"] < 2e-5
    if code == 0:
        assert good or borderline
        assert sf.info(out).frames == 4000
    else:
        assert code == 2 and len(err) == 1 and (not good or borderline), err
        assert not out.exists()


def test_fuzz_list_of_many_files(work, capsys):
    """``FUZZ_LIST_FILES`` generated files (default 40) in one ``--list``: every good file written with its
    input's length, every bad one reported once (stderr, failed.txt, inference.json), no traceback."""
    count = int(os.environ.get("FUZZ_LIST_FILES", "40"))
    rng = np.random.default_rng(15)
    d = _fresh(work)
    rows, expected = [], {}
    for k in range(count):
        spec = {"rate": int(rng.choice(RATES)), "channels": int(rng.choice([1, 1, 1, 2, 3])),
                "dtype": str(rng.choice(["int16", "float32"])), "content": str(rng.choice(CONTENTS, p=[.6, .1, .1, .1, .1])),
                "seed": k}
        spec["frames"] = int(rng.choice([0, int(rng.integers(1, 300)), int(rng.integers(0, 3 * spec["rate"]))],
                                        p=[.05, .2, .75]))
        name = f"f{k:03d}.wav"
        spec = write_audio(d / name, spec)
        item_id = f"spk{k % 3}/u{k:03d}"
        kind = rng.random()
        if kind < 0.04:
            item_id = f"../../escape{k}"
        elif kind < 0.06:
            name = f"missing{k}.wav"
        rows.append(f"{item_id},{name},{work['enrollment']}")
        good = spec["frames"] > 0 and spec["finite"] and spec["channels"] == 1 and not item_id.startswith("..") \
            and not name.startswith("missing")
        expected[item_id] = (good, spec["frames"], spec["rate"])
    (d / "list.csv").write_text("id,mixture,enrollment\n" + "\n".join(rows) + "\n")
    out = d / "out"
    code, err = _run(["--ckpt", work["tsb"], "--list", str(d / "list.csv"), "--out_dir", str(out),
                      "--batch_size", "4"], capsys)
    bad = {i for i, (good, _, _) in expected.items() if not good}
    assert code == (2 if bad else 0)
    for item_id, (good, frames, rate) in expected.items():
        reported = [line for line in err if line.startswith(f"failed: {item_id}: ")]
        if good:
            info = sf.info(out / f"{item_id}.wav")
            assert (info.frames, info.samplerate) == (frames, rate), item_id
            assert not reported
        else:
            assert len(reported) == 1 and not (out / f"{item_id}.wav").exists(), (item_id, err)
    failed = (out / "failed.txt").read_text().splitlines() if bad else []
    assert sorted(line.split("\t")[0] for line in failed) == sorted(bad)
    assert {f["id"] for f in json.loads((out / "inference.json").read_text())["failed"]} == bad
    assert not list(d.parent.rglob("escape*")) and not list(d.rglob(".tmp_*"))
    print(f"fuzz list: {count} files, {count - len(bad)} written, {len(bad)} reported")
