"""Slicer (ddtse/slicer.py, slicer.py CLI): openvpi cut points, target-length DP, drops, outputs, errors."""
import numpy as np
import pytest
import soundfile as sf

from ddtse.cli.slicer import main as slicer_main
from ddtse.errors import DdtseError
from ddtse.slicer import Slicer, slice_files

SR = 8000
HOP = SR // 100  # 10 ms


def build(pattern, seed=0):
    """pattern: ("sp"|"sil", seconds[, dips]); speech = noise at -20 dB, silence = -60 dB noise with 60 ms
    zero dips at the given offsets (s, from the silence start). Returns (wav, [(kind, start, end, dips)])."""
    rng = np.random.default_rng(seed)
    parts, spans, t = [], [], 0
    for kind, seconds, *rest in pattern:
        n = int(seconds * SR)
        if kind == "sp":
            x = rng.normal(0, 0.1, n)
        else:
            x = rng.normal(0, 0.001, n)
            for d in rest[0] if rest else ():
                a = int(d * SR) - int(0.03 * SR)
                x[a : a + int(0.06 * SR)] = 0
        parts.append(x)
        spans.append((kind, t, t + n, [t + int(d * SR) for d in (rest[0] if rest else ())]))
        t += n
    return np.concatenate(parts).astype(np.float32), spans


PATTERN = [
    ("sil", 0.3), ("sp", 3.0), ("sil", 0.6, [0.3]), ("sp", 4.0), ("sil", 1.0, [0.2, 0.8]),
    ("sp", 6.0), ("sil", 0.4, [0.2]), ("sp", 2.0), ("sil", 2.0, [0.2]),
]


def test_openvpi_cut_points_within_a_hop():
    wav, spans = build(PATTERN)
    result = Slicer(SR, hop_size=10, max_sil_kept=500).slice(wav)
    clips = [(c.start, c.end) for c in result.clips]
    assert len(clips) == 3
    # no cut in the first silence (only 3.3 s since the start < min_length 5 s)
    assert clips[0][0] == 0
    long_sil, short_sil, tail = spans[4], spans[6], spans[8]
    assert abs(clips[0][1] - long_sil[3][0]) <= HOP  # long silence: kept edges at the quietest points
    assert abs(clips[1][0] - long_sil[3][1]) <= HOP
    assert abs(clips[1][1] - short_sil[3][0]) <= HOP and clips[2][0] == clips[1][1]  # one cut point
    assert abs(clips[2][1] - tail[3][0]) <= HOP  # trailing silence trimmed at its quietest point
    assert [d.reason for d in result.dropped] == ["silence", "silence"]


def test_short_input_is_one_clip_and_constraints_are_checked():
    wav, _ = build([("sp", 1.0), ("sil", 0.5, [0.25]), ("sp", 1.0)])
    assert [(c.start, c.end) for c in Slicer(SR).slice(wav).clips] == [(0, len(wav))]
    with pytest.raises(DdtseError, match="min_length >= min_interval >= hop_size"):
        Slicer(SR, min_length=200, min_interval=300)
    with pytest.raises(DdtseError, match="min_length >= min_interval >= hop_size"):
        Slicer(SR, min_interval=5, hop_size=10)
    with pytest.raises(DdtseError, match="mode"):
        Slicer(SR, mode="dp")


def test_target_mode_groups_bursts_into_legal_lengths():
    pattern = [("sil", 0.5)]
    for _ in range(8):
        pattern += [("sp", 3.0), ("sil", 0.5, [0.25])]
    wav, spans = build(pattern)
    result = Slicer(SR, hop_size=10, max_sil_kept=100, mode="target", target_min=5, target_max=8).slice(wav)
    bursts = [(a, b) for kind, a, b, _ in spans if kind == "sp"]
    clips = [(c.start, c.end) for c in result.clips]
    assert len(clips) == 4  # pairs of bursts: 3 + 0.5 + 3 s (+ <= 0.1 s kept each side)
    for (start, end), (b0, b1) in zip(clips, zip(bursts[::2], bursts[1::2])):
        assert 5 * SR <= end - start <= 8 * SR
        assert b0[0] - int(0.1 * SR) - 2 * HOP <= start <= b0[0]
        assert b1[1] <= end <= b1[1] + int(0.1 * SR) + 2 * HOP
    assert not [d for d in result.dropped if d.reason != "silence"]


def test_target_mode_reports_uncuttable_speech():
    wav, _ = build([("sp", 6.0), ("sil", 0.6, [0.3]), ("sp", 20.0), ("sil", 0.6, [0.3]), ("sp", 7.0)])
    result = Slicer(SR, mode="target", target_min=5, target_max=15).slice(wav)
    assert len(result.clips) == 2
    dropped = [d for d in result.dropped if d.reason.startswith("no clip")]
    assert len(dropped) == 1 and abs(dropped[0].start - int(6.6 * SR)) <= 3 * HOP
    assert abs((dropped[0].end - dropped[0].start) - 20 * SR) <= 6 * HOP


def test_slice_files_numbering_overwrite_and_drops(tmp_path, capsys):
    wav, _ = build(PATTERN)
    rng = np.random.default_rng(1)  # + 3 s of silence and a 0.3 s blip: a clip below --min_keep 1 s
    wav = np.concatenate([wav, rng.normal(0, 0.001, 3 * SR), rng.normal(0, 0.1, int(0.3 * SR))]).astype(np.float32)
    src = tmp_path / "in" / "talk.wav"
    src.parent.mkdir()
    sf.write(str(src), wav, SR, subtype="PCM_16")
    out = tmp_path / "clips"
    assert slicer_main([str(src), "--out_dir", str(out), "--min_keep", "1.0"]) in (0, None)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["talk_0001.wav", "talk_0002.wav", "talk_0003.wav"]
    assert sf.info(str(out / "talk_0001.wav")).samplerate == SR
    printed = capsys.readouterr().out
    assert "too short" in printed and "3 clip(s)" in printed
    (out / "talk_0009.wav").write_bytes(b"stale")
    with pytest.raises(DdtseError, match="--overwrite"):
        slice_files([src], out, {}, overwrite=False, log=lambda *_: None)
    summary = slice_files([tmp_path / "in"], out, {"mode": "target", "min_keep": 1.0}, overwrite=True,
                          log=lambda *_: None)
    assert not (out / "talk_0009.wav").exists() and summary["clips"] == len(list(out.glob("talk_*.wav")))
    silent = tmp_path / "in2" / "quiet.wav"
    silent.parent.mkdir()
    sf.write(str(silent), np.zeros(SR * 7, np.float32), SR)
    summary = slice_files([silent], tmp_path / "clips2", {}, log=lambda *_: None)
    assert summary["clips"] == 0 and summary["dropped"][0]["reason"] == "all silence"
