import numpy as np
import pytest
import soundfile as sf

from ddtse.audio.io import audio_info, find_audio_files, load_audio, resample, save_audio
from ddtse.errors import DdtseError


def test_load_real_file_at_own_and_other_rate(assets):
    wav = load_audio(assets / "arctic_a0007_male.wav")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert audio_info(assets / "arctic_a0007_male.wav").sample_rate == 16000
    wav8 = load_audio(assets / "arctic_a0007_male.wav", 8000)
    assert abs(len(wav8) - len(wav) / 2) <= 1


def test_resample_preserves_a_tone():
    sr = 44100
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(tone, sr, 16000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert len(out) == 16000
    assert np.sqrt(np.mean((out[200:-200] - expected[200:-200]) ** 2)) < 1e-3


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
def test_formats_round_trip(tmp_path, ext):
    x = (0.3 * np.sin(np.linspace(0, 300, 8000))).astype(np.float32)
    path = save_audio(tmp_path / f"a{ext}", x, 16000, subtype="PCM_16" if ext == ".flac" else
                      ("VORBIS" if ext == ".ogg" else "FLOAT"))
    y = load_audio(path)
    tol = 1e-6 if ext == ".wav" else (1e-3 if ext == ".flac" else 0.1)
    assert np.max(np.abs(x - y[: len(x)])) < tol


def test_stereo_refused_unless_channel_chosen(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([np.ones(100), -np.ones(100)], 1) * 0.5, 8000)
    with pytest.raises(DdtseError, match="2 channels"):
        load_audio(path)
    assert np.allclose(load_audio(path, channel=1), -0.5)
    assert load_audio(path, multichannel=True).shape == (2, 100)


def test_bad_files_named(tmp_path):
    with pytest.raises(DdtseError, match="not found: .*nope.wav"):
        load_audio(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(DdtseError, match="cannot read audio file .*bad.wav"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(DdtseError, match="empty"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(DdtseError, match="NaN"):
        load_audio(nan)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800), 16000)
    with pytest.raises(DdtseError, match="too short"):
        load_audio(short, min_seconds=1.0)


def test_wrong_rate_refused_when_resampling_off(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(441), 44100)
    with pytest.raises(DdtseError, match="44100 Hz but 16000 Hz"):
        load_audio(path, 16000, allow_resample=False)


def test_pcm16_never_clips_silently(tmp_path):
    x = np.array([0.0, 1.8, -0.9], dtype=np.float32)
    with pytest.warns(UserWarning, match="peak"):
        save_audio(tmp_path / "c.wav", x, 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "c.wav")
    assert np.max(np.abs(y)) < 1.0 and y[1] > 0.98 and np.isclose(y[2] / y[1], -0.5, atol=1e-3)


def test_no_silent_overwrite_and_no_partial_files(tmp_path):
    save_audio(tmp_path / "o.wav", np.zeros(10), 16000)
    with pytest.raises(DdtseError, match="exists"):
        save_audio(tmp_path / "o.wav", np.zeros(10), 16000, overwrite=False)
    with pytest.raises(DdtseError, match="non-finite"):
        save_audio(tmp_path / "n.wav", np.array([np.inf]), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]
    assert find_audio_files(tmp_path) == [tmp_path / "o.wav"]
