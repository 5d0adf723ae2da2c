"""The sanity ladder's fixed batch: 4 real two-talker mixtures where only the enrollment tells the target.

Two LibriSpeech test-other talkers (1688, male; 1998, female; clips in tests/assets, see its
README) are cut into two short segments each (utterance ...-0001) and mixed at 0 dB SIR: two
mixtures. Each mixture appears twice, once per talker as the target, with an enrollment from
another utterance of that talker (...-0002). So items 0 and 1 (and 2 and 3) have the *same*
mixture and differ only in the enrollment and the reference: an extractor that ignores the
enrollment gives the same output for both roles and cannot beat the mixture on both (for a fixed
output e and near-orthogonal talkers, SI-SDR(e, A) + SI-SDR(e, B) <= ~0 dB, as for the mixture).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ddtse.audio.io import load_audio

ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: talker -> (utterance the target segments come from, utterance the enrollments come from)
TALKERS = {
    "1688": ("librispeech_1688-142285-0001.wav", "librispeech_1688-142285-0002.wav"),
    "1998": ("librispeech_1998-15444-0001.wav", "librispeech_1998-15444-0002.wav"),
}
SEGMENT_STARTS = (0.1, 1.1)   # s, start of mixture k's segment in each talker's target utterance
ENROLL_STARTS = (0.0, 0.9)    # s, start of item k's enrollment in the talker's other utterance
LEVEL_RMS = 0.05              # every source is scaled to this RMS (0 dB SIR)


def _cut(wav: torch.Tensor, start: float, seconds: float, sample_rate: int) -> torch.Tensor:
    a = int(round(start * sample_rate))
    n = int(round(seconds * sample_rate))
    seg = wav[a:a + n]
    if seg.shape[0] != n:
        raise ValueError(f"segment {start}+{seconds} s is past the clip's end")
    return seg


def _rms_to(x: torch.Tensor, rms: float) -> torch.Tensor:
    return x * (rms / x.pow(2).mean().sqrt().clamp_min(1e-8))


def ladder_batch(sample_rate: int = 8000, seconds: float = 0.75, enrollment_seconds: float = 1.0) -> dict:
    """The 4 fixed items (ddtse batch contract), order (mix0, 1688), (mix0, 1998), (mix1, 1688),
    (mix1, 1998); also ``interferer`` (B, T), the other talker's clean signal."""
    if seconds > 0.9 or enrollment_seconds > 1.1:
        raise ValueError("the clips hold two 0.9 s segments and two 1.1 s enrollments")
    talkers = list(TALKERS)
    source, enroll = {}, {}
    for name, (target_file, enroll_file) in TALKERS.items():
        wav = torch.from_numpy(load_audio(ASSETS / target_file, sample_rate=sample_rate))
        ewav = torch.from_numpy(load_audio(ASSETS / enroll_file, sample_rate=sample_rate))
        source[name] = [_rms_to(_cut(wav, s, seconds, sample_rate), LEVEL_RMS) for s in SEGMENT_STARTS]
        enroll[name] = [_rms_to(_cut(ewav, s, enrollment_seconds, sample_rate), LEVEL_RMS) for s in ENROLL_STARTS]
    mixtures, targets, interferers, enrollments, ids = [], [], [], [], []
    for k in range(len(SEGMENT_STARTS)):
        mixture = source[talkers[0]][k] + source[talkers[1]][k]
        for i, name in enumerate(talkers):
            other = talkers[1 - i]
            mixtures.append(mixture)
            targets.append(source[name][k])
            interferers.append(source[other][k])
            enrollments.append(enroll[name][k])
            ids.append(f"mix{k}/{name}")
    n, ne, b = targets[0].shape[0], enrollments[0].shape[0], len(targets)
    return {
        "mixture": torch.stack(mixtures)[:, None], "target": torch.stack(targets),
        "interferer": torch.stack(interferers), "enrollment": torch.stack(enrollments),
        "lengths": torch.full((b,), n, dtype=torch.long),
        "enrollment_lengths": torch.full((b,), ne, dtype=torch.long), "ids": ids,
    }
