"""Load and save audio: float32, mono (or chosen channels), at a requested rate; clear errors."""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ddtse.errors import DdtseError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, length in frames and channel count of an audio file (header only)."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt files
        raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality); float32 out."""
    if int(orig_sr) == int(target_sr):
        return np.asarray(wav, dtype=np.float32)
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32)
    # soxr wants (frames, channels)
    flat = wav.reshape(-1, wav.shape[-1]).T
    out = soxr.resample(np.ascontiguousarray(flat), orig_sr, target_sr, quality="HQ").T
    return np.ascontiguousarray(out.reshape(*wav.shape[:-1], -1)).astype(np.float32)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channel: int | None = None,
    *,
    multichannel: bool = False,
    allow_resample: bool = True,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Load ``path`` as float32 at ``sample_rate`` (None keeps the file's rate).

    Returns shape (T,) for mono, or (C, T) with ``multichannel=True``. A stereo file is refused
    unless ``channel`` picks one or ``multichannel`` is set. Empty, unreadable, too short or
    non-finite audio raises DdtseError naming the file. With ``allow_resample=False`` a file at
    another rate is refused instead of resampled.
    """
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc
    if data.shape[0] == 0:
        raise DdtseError(f"audio file is empty: {path}")
    data = data.T  # (C, T)
    if channel is not None:
        if not 0 <= channel < data.shape[0]:
            raise DdtseError(f"{path} has {data.shape[0]} channel(s); channel {channel} does not exist")
        data = data[channel : channel + 1]
    if data.shape[0] > 1 and not multichannel:
        raise DdtseError(
            f"{path} has {data.shape[0]} channels; pass a channel to use (e.g. --channel 0) or a mono file"
        )
    if not np.all(np.isfinite(data)):
        raise DdtseError(f"audio file contains NaN or infinite samples: {path}")
    if sample_rate is not None and sr != sample_rate:
        if not allow_resample:
            raise DdtseError(f"{path} is at {sr} Hz but {sample_rate} Hz is required (resampling is off)")
        data = resample(data, sr, sample_rate)
        sr = sample_rate
    if data.shape[-1] < min_seconds * sr:
        raise DdtseError(
            f"audio file is too short: {path} ({data.shape[-1] / sr:.2f} s < {min_seconds:.2f} s)"
        )
    return data if multichannel else data[0]


def save_audio(
    path: str | Path,
    wav: np.ndarray,
    sample_rate: int,
    *,
    subtype: str = "FLOAT",
    overwrite: bool = True,
) -> Path:
    """Write (T,) or (C, T) audio atomically; ``subtype`` "FLOAT" or "PCM_16".

    PCM_16 never clips silently: a signal peaking above full scale is scaled down to 0.99 peak
    with a warning. An existing file is kept unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DdtseError(f"output exists, not overwriting: {path} (pass --overwrite to replace it)")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.T  # soundfile wants (T, C)
    if not np.all(np.isfinite(wav)):
        raise DdtseError(f"refusing to write non-finite audio to {path}")
    if subtype.upper() == "PCM_16":
        peak = float(np.max(np.abs(wav))) if wav.size else 0.0
        if peak > 1.0:
            warnings.warn(f"{path}: peak {peak:.2f} > 1, scaled to 0.99 to avoid clipping in PCM_16")
            wav = wav * (0.99 / peak)
    if path.is_dir():
        raise DdtseError(f"output path is a folder, not a file: {path}")
    return _write_atomically(path, lambda tmp: sf.write(tmp, wav, int(sample_rate), subtype=subtype.upper(),
                                                        format=_format_for(path)))


def _umask_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_beside(path: Path) -> str:
    """A fresh hidden temporary file in ``path``'s folder (created if needed); OSError -> DdtseError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=path.suffix)
    except OSError as exc:
        raise DdtseError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    os.close(fd)
    return tmp


def _publish(tmp: str, path: Path) -> None:
    """Give the finished temporary file the umask's mode (mkstemp makes it 0600) and move it into place."""
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temporary file + rename), mode 0666 & ~umask; OSError -> DdtseError."""
    return _write_atomically(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _write_atomically(path: Path, write) -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then publish it under ``path``; nothing is
    left behind on failure; OSError -> DdtseError."""
    tmp = _temp_beside(path)
    try:
        write(tmp)
        _publish(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise DdtseError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` if needed and check that files can be created in it; else one DdtseError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DdtseError(f"{what} is a file, not a folder: {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".tmp_probe_")
        os.close(fd)
        os.remove(tmp)
    except OSError as exc:
        raise DdtseError(f"cannot write to the {what} {path}: {exc.strerror or exc}") from exc
    return path


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    return {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(ext, "WAV")


def find_audio_files(root: str | Path) -> list[Path]:
    """All audio files below ``root`` (recursively), sorted."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
