"""The compressed complex STFT of SGMSE+/DDTSE: STFT -> beta*|z|^alpha*e^{i angle z}, and its exact inverse."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ddtse.errors import DdtseError


def stft_parts(wav: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: torch.Tensor,
               center: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts (..., F, N) of ``torch.stft``. While the model is traced for export
    (ONNX has no complex tensors) the same transform runs in its real-valued form."""
    if torch.jit.is_tracing():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # return_complex=False is deprecated, and the only exportable form
            spec = torch.stft(wav, n_fft, hop_length, win_length, window, center=center, return_complex=False)
        return spec[..., 0], spec[..., 1]
    spec = torch.stft(wav, n_fft, hop_length, win_length, window, center=center, return_complex=True)
    return spec.real, spec.imag


@dataclass
class SpecConfig:
    """STFT and compression settings. ``for_rate`` scales the 16 kHz defaults to other rates."""

    n_fft: int = 510
    hop_length: int = 128
    transform: str = "exponent"  # "exponent" (beta*|z|^alpha), "log" (beta*log(1+|z|)) or "none"
    alpha: float = 0.5
    beta: float = 0.15
    pad_multiple: int = 64  # frames are right-padded to a multiple of this for the U-Net

    @classmethod
    def for_rate(cls, sample_rate: int, **overrides) -> "SpecConfig":
        """16 kHz: n_fft 510 (256 bins), hop 128. Other rates keep the window's duration,
        with the bin count rounded to a multiple of 64 so the U-Net can halve it 6 times
        (8 kHz: 254/64, 44.1 kHz: 1406/352, 48 kHz: 1534/384)."""
        bins = max(64, int(round(256 * sample_rate / 16000 / 64)) * 64)
        n_fft = 2 * (bins - 1)
        params = dict(n_fft=n_fft, hop_length=(n_fft + 2) // 4)
        params.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**params)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


class SpectralTransform(torch.nn.Module):
    """Waveform <-> compressed complex spectrogram, batched over any leading dims, on any device.

    ``forward(wav (..., T)) -> complex (..., F, N)``; ``inverse(spec, length) -> (..., length)``.
    """

    def __init__(self, config: SpecConfig | None = None, **kwargs):
        super().__init__()
        self.config = config or SpecConfig(**kwargs)
        if self.config.transform not in ("exponent", "log", "none"):
            raise DdtseError(f"unknown spectral transform '{self.config.transform}' (exponent, log, none)")
        # periodic Hann of length n_fft, as torch.hann_window's default
        self.register_buffer("window", torch.hann_window(self.config.n_fft), persistent=False)

    # -- STFT --------------------------------------------------------------------------------
    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """(..., T) real -> (..., F, N) complex; centred (reflect), not normalised."""
        lead, length = wav.shape[:-1], wav.shape[-1]
        spec = torch.stft(
            wav.reshape(-1, length).float(), n_fft=self.config.n_fft, hop_length=self.config.hop_length,
            window=self.window, center=True, normalized=False, return_complex=True,
        )
        return spec.reshape(*lead, *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., F, N) complex -> (..., length) real."""
        lead = spec.shape[:-2]
        wav = torch.istft(
            spec.reshape(-1, *spec.shape[-2:]), n_fft=self.config.n_fft, hop_length=self.config.hop_length,
            window=self.window, center=True, normalized=False, length=length,
        )
        return wav.reshape(*lead, length)

    # -- amplitude compression -----------------------------------------------------------
    def compress(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.transform == "none":
            return z
        mag = z.abs()
        new_mag = c.beta * (mag.pow(c.alpha) if c.transform == "exponent" else torch.log1p(mag))
        return torch.polar(new_mag, z.angle())

    def decompress(self, s: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.transform == "none":
            return s
        mag = s.abs() / c.beta
        new_mag = mag.pow(1.0 / c.alpha) if c.transform == "exponent" else torch.expm1(mag)
        return torch.polar(new_mag, s.angle())

    # -- the whole transform -------------------------------------------------------------
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.compress(self.stft(wav))

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return self.istft(self.decompress(spec), length)

    def n_frames(self, length: int) -> int:
        return length // self.config.hop_length + 1

    def pad_frames(self, spec: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Right-pad the frame axis with zeros to a multiple of ``pad_multiple``; returns (padded, original frames)."""
        frames = spec.shape[-1]
        m = self.config.pad_multiple
        extra = (-frames) % m
        if extra:
            spec = F.pad(spec, (0, extra))
        return spec, frames

    @staticmethod
    def crop_frames(spec: torch.Tensor, frames: int) -> torch.Tensor:
        return spec[..., :frames]


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """(B, C, F, N) complex -> (B, 2C, F, N) real: [Re c0, Im c0, Re c1, Im c1, ...]."""
    real = torch.view_as_real(spec)  # (B, C, F, N, 2)
    return real.permute(0, 1, 4, 2, 3).reshape(spec.shape[0], -1, *spec.shape[-2:])


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """(B, 2C, F, N) real -> (B, C, F, N) complex (inverse of ``complex_to_channels``)."""
    b, c2, f, n = x.shape
    pairs = x.reshape(b, c2 // 2, 2, f, n).permute(0, 1, 3, 4, 2).contiguous()
    return torch.view_as_complex(pairs)
