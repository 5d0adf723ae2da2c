import math

import numpy as np
import pytest
import torch

from ddtse.metrics import compute_metrics, estoi_score, masked_si_sdr, pesq_score, si_sdr, si_sdr_improvement


def test_si_sdr_of_known_mixture(rng):
    s = rng.standard_normal(16000)
    n = rng.standard_normal(16000)
    n -= n.mean()
    s -= s.mean()
    n -= (n @ s) / (s @ s) * s  # orthogonal noise -> exact value
    for snr in (0.0, 10.0, -5.0):
        est = s + n * np.sqrt((s @ s) / (n @ n) / 10 ** (snr / 10))
        assert abs(si_sdr(est, s) - snr) < 1e-6
    noisy = s + 0.1 * n
    assert abs(si_sdr(3.0 * noisy + 2.0, s) - si_sdr(noisy, s)) < 1e-6  # scale and offset invariant


def test_torch_and_numpy_agree_and_batch(rng):
    ref = rng.standard_normal((3, 800)).astype(np.float32)
    est = ref + 0.3 * rng.standard_normal((3, 800)).astype(np.float32)
    t = si_sdr(torch.from_numpy(est), torch.from_numpy(ref)).numpy()
    assert t.shape == (3,)
    np.testing.assert_allclose(t, si_sdr(est, ref), atol=1e-3)
    mix = ref + rng.standard_normal((3, 800)).astype(np.float32)
    np.testing.assert_allclose(si_sdr_improvement(est, ref, mix), si_sdr(est, ref) - si_sdr(mix, ref))


def test_silent_inputs_are_finite():
    z = np.zeros(1000)
    x = np.random.default_rng(1).standard_normal(1000)
    assert np.isfinite(si_sdr(z, x)) and np.isfinite(si_sdr(x, z)) and np.isfinite(si_sdr(z, z))
    assert torch.isfinite(si_sdr(torch.zeros(2, 10), torch.zeros(2, 10))).all()


def test_masked_si_sdr_ignores_padding(rng):
    ref = torch.from_numpy(rng.standard_normal((2, 1000)).astype(np.float32))
    est = ref + 0.1 * torch.from_numpy(rng.standard_normal((2, 1000)).astype(np.float32))
    lengths = torch.tensor([1000, 600])
    garbage = est.clone()
    garbage[1, 600:] = 100.0
    masked = masked_si_sdr(garbage, ref, lengths)
    assert torch.allclose(masked[1], si_sdr(est[1, :600], ref[1, :600]), atol=1e-3)
    assert torch.allclose(masked[0], si_sdr(est[0], ref[0]), atol=1e-3)


def test_pesq_and_estoi_on_real_speech(speech_pair):
    clean, noisy, sr = speech_pair
    # the PESQ package's own test value for this pair (wide-band)
    assert abs(pesq_score(clean, noisy, sr) - 1.0832337141036987) < 1e-4
    assert pesq_score(clean, clean, sr) > 4.5
    nb = pesq_score(clean[::2], noisy[::2], 8000)
    assert 1.0 < nb < 3.0
    e_noisy, e_clean = estoi_score(clean, noisy, sr), estoi_score(clean, clean, sr)
    assert 0.2 < e_noisy < 0.7 and e_clean > 0.99


def test_pesq_other_rates_resampled_and_silence_is_nan(speech_pair):
    from ddtse.audio.io import resample

    clean, noisy, sr = speech_pair
    c44, n44 = resample(clean, sr, 44100), resample(noisy, sr, 44100)
    assert abs(pesq_score(c44, n44, 44100) - pesq_score(clean, noisy, sr)) < 0.1
    assert math.isnan(pesq_score(np.zeros(sr), noisy[:sr], sr))


def test_compute_metrics_trims_to_shorter(speech_pair):
    clean, noisy, sr = speech_pair
    m = compute_metrics(clean, noisy[:-100], sr, mixture=noisy)
    assert set(m) == {"si_sdr", "si_sdri", "pesq", "estoi"}
    assert abs(m["si_sdri"]) < 1e-6


def test_selection_metrics_per_item(speech_pair):
    clean, noisy, sr = speech_pair
    other = noisy - clean  # the "interferer"
    mixture = clean + other
    wrong = compute_metrics(clean, other, sr, mixture, ["confusion", "selected", "accepted"], interferer=other)
    assert wrong["confusion"] == 1.0 and wrong["accepted"] == 0.0 and wrong["selected"] == 0.0
    assert wrong["si_sdr_interferer"] > 50 and wrong["si_sdr"] < wrong["si_sdr_interferer"]
    right = compute_metrics(clean, clean + 0.01 * other, sr, mixture, ["confusion", "selected", "accepted"],
                            interferer=other)
    assert right["confusion"] == 0.0 and right["accepted"] == 1.0 and right["selected"] == 1.0
    assert right["si_sdri"] == pytest.approx(si_sdr(clean + 0.01 * other, clean) - si_sdr(mixture, clean))
    # acceptance is WeSep's SI-SDRi > 1 dB: orthogonal noise gives exact SI-SDRs
    rng = np.random.default_rng(0)
    s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    s, n = s - s.mean(), n - n.mean()
    n -= (n @ s) / (s @ s) * s
    at = lambda snr: s + n * np.sqrt((s @ s) / (n @ n) / 10 ** (snr / 10))  # noqa: E731
    for gain, accepted in ((1.5, 1.0), (0.5, 0.0)):
        m = compute_metrics(s, at(gain), sr, at(0.0), ["accepted"])
        assert m["si_sdri"] == pytest.approx(gain, abs=1e-6) and m["accepted"] == accepted
    # selection needs a 1 dB margin over the interferer: with s and n orthogonal and equally loud,
    # a*s + b*n is 20 log10(a/b) dB from s and the negative of that from n
    n = n * np.sqrt((s @ s) / (n @ n))
    for margin, selected in ((1.5, 1.0), (0.5, 0.0)):
        ratio = 10 ** (margin / 40)
        m = compute_metrics(s, ratio * s + n, sr, None, ["selected", "confusion"], interferer=n)
        assert m["si_sdr"] - m["si_sdr_interferer"] == pytest.approx(margin, abs=1e-6)
        assert m["selected"] == selected and m["confusion"] == 0.0


def test_dnsmos_equals_speechmos_on_real_speech(assets):
    """Our DNSMOS for a file is the speechmos package's own value for it (same ONNX models)."""
    from speechmos import dnsmos as package

    from ddtse.audio.io import load_audio
    from ddtse.metrics import dnsmos_scores

    for name, ovrl in (("pesq_speech.wav", 3.25), ("pesq_speech_bab_0dB.wav", 1.09)):
        ours = dnsmos_scores(load_audio(assets / name), 16000)
        theirs = package.run(str(assets / name), 16000)
        assert ours["dnsmos_ovrl"] == pytest.approx(theirs["ovrl_mos"], abs=1e-6)
        assert ours["dnsmos_sig"] == pytest.approx(theirs["sig_mos"], abs=1e-6)
        assert ours["dnsmos_bak"] == pytest.approx(theirs["bak_mos"], abs=1e-6)
        assert ours["dnsmos_p808"] == pytest.approx(theirs["p808_mos"], abs=1e-6)
        assert ours["dnsmos_ovrl"] == pytest.approx(ovrl, abs=0.01)
    # another rate is resampled to 16 kHz first (the models' rate)
    from ddtse.audio.io import resample

    clean = load_audio(assets / "pesq_speech.wav")
    at_22k = dnsmos_scores(resample(clean, 16000, 22050), 22050)
    assert at_22k["dnsmos_ovrl"] == pytest.approx(3.25, abs=0.1)
