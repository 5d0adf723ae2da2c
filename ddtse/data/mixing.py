"""Dynamic (on-the-fly) mixing from any speaker-labelled pool of single-speaker utterances.

Per item (random generator seeded by ``(seed, index, epoch)``; validation/test use epoch 0 so the
set is fixed): the target utterance ``pool[index % N]`` at a random RMS level
(``speech_level_range``, dB, approximating Libri2Mix's -33..-25 LUFS); ``num_interferers``
utterances of other speakers, each at a random SIR (``sir_range``: target power over that
interferer's power, both measured on the first microphone over the item's samples); optional
noise (files of a folder, or generated coloured noise) at a random SNR (``noise_snr_range``:
target power over noise power); optional reverberation from pyroomacoustics shoebox RIRs with one
or two microphones; then the 0.9 peak guard scales everything together. Enrollment: another
utterance of the target speaker (dry, level-normalised).

With reverberation the mixture is (C, T), C = ``reverb.mics`` (1 or 2; two microphones feed the
IPD front-end) and the target is, per ``reverb.target_reference``: ``direct`` (default: the direct
path at the first microphone, i.e. the RIR up to 4 ms after its peak, so it is time-aligned with
the mixture), ``reverberant`` (the full reverberant image at the first microphone) or ``dry``
(the unreverberated source, not delay-compensated).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

from ddtse.audio.io import find_audio_files
from ddtse.data.base import (
    PEAK_GUARD,
    ExtractionDataset,
    fit_length,
    item_rng,
    peak_guard,
    random_window,
    read_csv_rows,
    read_segment,
    set_rms_db,
    speaker_of,
)
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS


# ----------------------------------------------------------------------------- utterance pools
@dataclass(frozen=True)
class Utterance:
    """One single-speaker recording; ``frames`` at the file's ``sample_rate``."""

    speaker: str
    path: str
    frames: int
    sample_rate: int
    utterance_id: str


class UtterancePool:
    """Speaker-labelled utterances with a speaker -> utterance-index table (built once)."""

    def __init__(self, utterances: list[Utterance], source: str = "pool"):
        if not utterances:
            raise DdtseError(f"utterance pool is empty: {source}")
        self.utterances = utterances
        self.source = source
        self.by_speaker: dict[str, np.ndarray] = {}
        for i, utt in enumerate(utterances):
            self.by_speaker.setdefault(utt.speaker, []).append(i)
        self.by_speaker = {s: np.array(v) for s, v in self.by_speaker.items()}
        self.speakers = sorted(self.by_speaker)
        self.frames = np.array([u.frames for u in utterances])

    def __len__(self) -> int:
        return len(self.utterances)


def pool_from_folder(root: str | Path) -> UtterancePool:
    """Audio files ``<root>/<speaker>/.../<utt>.wav``; speaker = first folder under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DdtseError(f"utterance folder not found: {root}")
    utterances = []
    for path in find_audio_files(root):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            raise DdtseError(f"{path}: expected <root>/<speaker>/.../<utt>.wav (file directly under the root)")
        try:
            info = sf.info(str(path))
        except Exception as exc:
            raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc
        utterances.append(Utterance(rel.parts[0], str(path), int(info.frames), int(info.samplerate), path.stem))
    return UtterancePool(utterances, str(root))


def pool_from_librimix(split_dir: str | Path, mixture_type: str = "mix_clean") -> UtterancePool:
    """Sources s1/s2 of a Libri2Mix split, each utterance once; speaker from the utterance id."""
    from ddtse.data.librimix import librimix_split_paths

    records = librimix_split_paths(split_dir, mixture_type)
    sr = int(sf.info(records[0].source_paths[0]).samplerate)
    seen, utterances = set(), []
    for record in records:
        for utt, path in zip(record.utterances, record.source_paths):
            if utt not in seen:
                seen.add(utt)
                utterances.append(Utterance(speaker_of(utt), path, record.length, sr, utt))
    return UtterancePool(utterances, str(split_dir))


def pool_from_csv(path: str | Path) -> UtterancePool:
    """CSV with columns ``speaker,path`` (+ optional ``length`` in samples); relative paths from the CSV."""
    path = Path(path)
    rows = read_csv_rows(path, ["speaker", "path"], what="utterance list")
    utterances = []
    for row in rows:
        audio = Path(row["path"]) if os.path.isabs(row["path"]) else path.parent / row["path"]
        if not audio.is_file():
            raise DdtseError(f"{path}: audio file not found: {audio}")
        try:
            info = sf.info(str(audio))
        except Exception as exc:
            raise DdtseError(f"{path}: cannot read audio file {audio}: {str(exc).splitlines()[0]}") from exc
        frames = int(float(row["length"])) if row.get("length") else int(info.frames)
        utterances.append(Utterance(row["speaker"], str(audio), frames, int(info.samplerate), audio.stem))
    return UtterancePool(utterances, str(path))


def build_pool(source) -> UtterancePool:
    """A pool from ``{type: folder|librimix|csv, path: ...}`` or a path (folder or .csv)."""
    if isinstance(source, UtterancePool):
        return source
    if isinstance(source, (str, Path)):
        source = {"type": "csv" if str(source).endswith(".csv") else "folder", "path": str(source)}
    if not isinstance(source, dict) or "path" not in source:
        raise DdtseError(f"utterance source must be a path or {{type, path}}, got {source!r}")
    kind = source.get("type", "folder")
    if kind == "folder":
        return pool_from_folder(source["path"])
    if kind == "librimix":
        return pool_from_librimix(source["path"], source.get("mixture_type", "mix_clean"))
    if kind == "csv":
        return pool_from_csv(source["path"])
    raise DdtseError(f"unknown utterance source type '{kind}' (folder, librimix, csv)")


# ----------------------------------------------------------------------------- signals
def colored_noise(frames: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    size = next_fast_len(frames + 1, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=size)[:frames]
    noise -= noise.mean()
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def power(wav: np.ndarray) -> float:
    """Mean power of a signal."""
    return float(np.mean(np.square(wav, dtype=np.float64)))


def scale_to_ratio(reference: np.ndarray, other: np.ndarray, ratio_db: float) -> np.ndarray:
    """Scale ``other`` so that 10*log10(P(reference) / P(other)) = ``ratio_db``."""
    p_other = power(other)
    if p_other <= 0:
        return other
    return (other * np.sqrt(power(reference) / (p_other * 10 ** (ratio_db / 10)))).astype(np.float32)


def simulate_rirs(n_sources: int, mics: int, sample_rate: int, rng: np.random.Generator,
                  rt60_range=(0.2, 0.6), room_min=(3.0, 3.0, 2.5), room_max=(8.0, 8.0, 3.5),
                  mic_spacing: float = 0.08, max_order: int | None = None) -> list[list[np.ndarray]]:
    """Shoebox RIRs ``rirs[mic][source]`` (pyroomacoustics ISM, ``inverse_sabine`` absorption)."""
    import pyroomacoustics as pra

    room_dim = rng.uniform(room_min, room_max)
    rt60 = float(rng.uniform(*rt60_range))
    absorption, order = pra.inverse_sabine(rt60, room_dim)
    if max_order is not None:
        order = min(order, int(max_order))
    room = pra.ShoeBox(room_dim, fs=sample_rate, materials=pra.Material(absorption), max_order=order)
    margin = 0.5
    center = np.array([rng.uniform(margin, d - margin) for d in room_dim[:2]] + [rng.uniform(1.0, 1.8)])
    azimuth = rng.uniform(0, np.pi)
    offset = 0.5 * mic_spacing * np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
    mic_positions = [center] if mics == 1 else [center - offset, center + offset]
    for _ in range(n_sources):
        position = np.array([rng.uniform(margin, d - margin) for d in room_dim[:2]] + [rng.uniform(1.2, 1.9)])
        room.add_source(position)
    room.add_microphone_array(np.array(mic_positions).T)
    room.compute_rir()
    return [[np.asarray(room.rir[m][s], dtype=np.float32) for s in range(n_sources)] for m in range(len(mic_positions))]


def direct_path(rir: np.ndarray, sample_rate: int, tail_seconds: float = 0.004) -> np.ndarray:
    """The RIR up to ``tail_seconds`` after its peak (the direct path), zeros after."""
    end = int(np.argmax(np.abs(rir))) + int(tail_seconds * sample_rate)
    out = np.zeros_like(rir)
    out[:end] = rir[:end]
    return out


def convolve(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve and keep the first ``len(wav)`` samples."""
    return fftconvolve(wav, rir)[: wav.shape[-1]].astype(np.float32)


# ----------------------------------------------------------------------------- dataset
@DATASETS.register("dynamic_mix")
class DynamicMixDataset(ExtractionDataset):
    """On-the-fly target + interferer(s) (+ noise, + reverberation) mixtures; see module docstring.

    Options: ``source`` (pool: folder, ``{type: librimix, path: <split_dir>}``, CSV),
    ``num_items`` (items per epoch, default pool size), ``num_interferers`` (1),
    ``sir_range`` ([-5, 5] dB), ``speech_level_range`` ([-33, -25] dB RMS), ``noise``
    (None, ``colored``, or a folder of noise files), ``noise_snr_range`` ([0, 20] dB),
    ``noise_prob`` (1.0), ``reverb`` (None or ``{mics: 1|2, prob, rt60_range, room_min,
    room_max, mic_spacing, max_order, target_reference: direct|reverberant|dry}``),
    plus the common ``segment_seconds``, ``enrollment_seconds``, ``min_enrollment_seconds``,
    ``resample``, ``embedding_map``. Evaluation items keep the target utterance's full length.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        seed: int = 0,
        train: bool = False,
        source=None,
        num_items: int | None = None,
        num_interferers: int = 1,
        sir_range=(-5.0, 5.0),
        speech_level_range=(-33.0, -25.0),
        noise=None,
        noise_snr_range=(0.0, 20.0),
        noise_prob: float = 1.0,
        reverb: dict | None = None,
        **common,
    ):
        super().__init__(sample_rate=sample_rate, seed=seed, train=train, **common)
        if source is None:
            raise DdtseError("dynamic_mix needs a 'source' (utterance folder, CSV or {type: librimix, path})")
        self.pool = build_pool(source)
        self.num_interferers = int(num_interferers)
        if len(self.pool.speakers) < self.num_interferers + 1:
            raise DdtseError(
                f"{self.pool.source} has {len(self.pool.speakers)} speaker(s); {self.num_interferers + 1} are needed"
            )
        self.sir_range = tuple(map(float, sir_range))
        self.level_range = tuple(map(float, speech_level_range))
        self.noise_snr_range = tuple(map(float, noise_snr_range))
        self.noise_prob = float(noise_prob)
        self.noise_files = None
        self.noise_kind = noise
        if noise not in (None, "colored"):
            files = find_audio_files(noise)
            if not Path(noise).is_dir() or not files:
                raise DdtseError(f"noise folder not found or holds no audio: {noise}")
            self.noise_files = [(str(p), int(sf.info(str(p)).frames)) for p in files]
        self.reverb = dict(reverb) if reverb else None
        if self.reverb:
            unknown = set(self.reverb) - {"mics", "prob", "rt60_range", "room_min", "room_max",
                                          "mic_spacing", "max_order", "target_reference"}
            if unknown:
                raise DdtseError(f"unknown reverb option(s): {', '.join(sorted(unknown))}")
            if self.reverb.get("mics", 1) not in (1, 2):
                raise DdtseError(f"reverb.mics must be 1 or 2, got {self.reverb.get('mics')}")
            if self.reverb.get("target_reference", "direct") not in ("direct", "reverberant", "dry"):
                raise DdtseError("reverb.target_reference must be direct, reverberant or dry")
        self.channels = self.reverb.get("mics", 1) if self.reverb else 1
        # targets: utterances whose speaker has another usable utterance to enrol with
        min_frames = self.min_enrollment_seconds * self.pool.utterances[0].sample_rate
        self.enrol_candidates: dict[str, np.ndarray] = {}
        targets = []
        for speaker, indices in self.pool.by_speaker.items():
            usable = indices[self.pool.frames[indices] >= min_frames]
            self.enrol_candidates[speaker] = usable
            targets.extend(i for i in indices if len(usable[usable != i]) > 0)
        if not targets:
            raise DdtseError(f"no speaker in {self.pool.source} has two utterances (needed for enrollment)")
        self.targets = np.array(sorted(targets))
        self.num_items = int(num_items) if num_items else len(self.targets)
        self.speaker_index = {s: i for i, s in enumerate(self.pool.speakers)}

    def __len__(self) -> int:
        return self.num_items

    def _read(self, utt: Utterance, frames: int | None, rng: np.random.Generator | None) -> np.ndarray:
        """A window of ``frames`` output samples (random start if ``rng``; whole if None), zero-padded."""
        file_frames = None if frames is None else int(round(frames * utt.sample_rate / self.sample_rate))
        start, count = random_window(utt.frames, file_frames, rng)
        wav = read_segment(utt.path, start, count, sample_rate=self.sample_rate, allow_resample=self.allow_resample)
        return wav if frames is None else fit_length(wav, frames)

    def _noise(self, frames: int, rng: np.random.Generator) -> np.ndarray:
        if self.noise_files is None:
            return colored_noise(frames, float(rng.choice([0.0, 1.0, 2.0])), rng)
        path, total = self.noise_files[int(rng.integers(len(self.noise_files)))]
        sr = sf.info(path).samplerate
        need = int(np.ceil(frames * sr / self.sample_rate))
        start, count = random_window(total, need, rng)
        wav = read_segment(path, start, count, sample_rate=self.sample_rate, allow_resample=self.allow_resample)
        reps = int(np.ceil(frames / max(1, wav.shape[-1])))
        return np.tile(wav, reps)[:frames] if reps > 1 else fit_length(wav, frames)

    def make_item(self, index: int, epoch: int) -> dict:
        rng = item_rng(self.seed, index, epoch)
        pool = self.pool
        target_utt = pool.utterances[int(self.targets[index % len(self.targets)])]
        target_index = int(self.targets[index % len(self.targets)])
        speaker = target_utt.speaker
        crop_rng = rng if self.train else None
        target = self._read(target_utt, self.segment, crop_rng)
        frames = target.shape[-1]

        others = [s for s in pool.speakers if s != speaker]
        chosen = rng.choice(len(others), size=self.num_interferers, replace=False)
        interferers = []
        for s in chosen:
            indices = pool.by_speaker[others[int(s)]]
            utt = pool.utterances[int(indices[int(rng.integers(len(indices)))])]
            interferers.append(self._read(utt, frames, rng))

        candidates = self.enrol_candidates[speaker]
        candidates = candidates[candidates != target_index]
        enrol_utt = pool.utterances[int(rng.choice(candidates))]
        enrollment = self.crop_enrollment(self._read(enrol_utt, None, None), rng)
        self.check_enrollment(enrollment, enrol_utt.path, f"{index}")
        enrollment = set_rms_db(enrollment, float(rng.uniform(*self.level_range)))
        enrollment *= min(1.0, PEAK_GUARD / (float(np.max(np.abs(enrollment))) + 1e-12))

        # images at the microphones: (mics, T) per source; reference target
        reference = target
        if self.reverb and rng.random() < float(self.reverb.get("prob", 1.0)):
            rirs = simulate_rirs(
                1 + len(interferers), self.channels, self.sample_rate, rng,
                rt60_range=self.reverb.get("rt60_range", (0.2, 0.6)),
                room_min=self.reverb.get("room_min", (3.0, 3.0, 2.5)),
                room_max=self.reverb.get("room_max", (8.0, 8.0, 3.5)),
                mic_spacing=float(self.reverb.get("mic_spacing", 0.08)),
                max_order=self.reverb.get("max_order"),
            )
            sources = [target, *interferers]
            images = [np.stack([convolve(src, rirs[m][s]) for m in range(self.channels)]) for s, src in enumerate(sources)]
            kind = self.reverb.get("target_reference", "direct")
            if kind == "direct":
                reference = convolve(target, direct_path(rirs[0][0], self.sample_rate))
            elif kind == "reverberant":
                reference = images[0][0]
        else:
            images = [np.tile(src, (self.channels, 1)) for src in [target, *interferers]]

        level = float(rng.uniform(*self.level_range))
        gain = 10 ** ((level - 10 * np.log10(power(images[0][0]) + 1e-12)) / 20)
        target_image, reference = images[0] * gain, reference * gain
        mixture = target_image.copy()
        sirs = []
        for image in images[1:]:
            sir = float(rng.uniform(*self.sir_range))
            g = np.sqrt(power(target_image[0]) / (power(image[0]) * 10 ** (sir / 10) + 1e-20))
            mixture += image * g
            sirs.append(sir)
        snr = None
        if self.noise_kind is not None and rng.random() < self.noise_prob:
            snr = float(rng.uniform(*self.noise_snr_range))
            for m in range(self.channels):
                mixture[m] += scale_to_ratio(target_image[0], self._noise(frames, rng), snr)
        signals = {"mixture": mixture.astype(np.float32), "target": reference.astype(np.float32)}
        peak_guard(signals)
        item = {
            "id": f"dm{index:06d}_{target_utt.utterance_id}",
            "mixture": signals["mixture"] if self.channels > 1 else signals["mixture"][0],
            "target": signals["target"],
            "enrollment": enrollment.astype(np.float32),
            "enrollment_path": enrol_utt.path,
            "target_path": target_utt.path,
            "sir_db": sirs,
            "snr_db": snr,
        }
        if self.train:
            item["speaker_index"] = self.speaker_index[speaker]
        return item
