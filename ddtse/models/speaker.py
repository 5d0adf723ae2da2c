"""Speaker clues: an enrollment encoder trained jointly with the extractor, a passthrough
for pre-computed embeddings, and a pretrained speaker-verification encoder (``ecapa_tdnn``,
trained by the ``speaker_encoder`` system; ``pretrained`` uses it as a clue). Independent of
the extractor backbones, so any model can use them.

Every speaker module has ``output_dim`` and ``uses_enrollment`` attributes.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddtse.audio.spectral import stft_parts
from ddtse.checkpoint import build_encoder, read_speaker_encoder_checkpoint
from ddtse.errors import DdtseError
from ddtse.registry import MODELS

__all__ = ["SpectralSpeakerEncoder", "PrecomputedEmbedding", "EcapaTdnn", "PretrainedSpeakerEncoder",
           "load_speaker_encoder", "mel_filterbank", "masked_mean_std"]


def _hz_to_mel(hz):
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 20.0, f_max: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, peak 1, on the one-sided STFT bins."""
    f_max = f_max or sample_rate / 2
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"mel band [{f_min}, {f_max}] Hz does not fit a {sample_rate} Hz signal")
    mel_points = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    bins_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = hz_points[:-2, None], hz_points[1:-1, None], hz_points[2:, None]
    rising = (bins_hz[None] - lower) / (centre - lower)
    falling = (upper - bins_hz[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of x (B, C, N) over the frames where mask (B, N) is true -> two (B, C)."""
    m = mask[:, None, :].to(x.dtype)
    count = m.sum(-1).clamp(min=1.0)
    mean = (x * m).sum(-1) / count
    var = (((x - mean[..., None]) * m) ** 2).sum(-1) / count
    return mean, torch.sqrt(var + eps)


class _ConvLayer(nn.Module):
    """Dilated 1-D conv -> ReLU -> per-frame LayerNorm over channels (no statistics across time,
    so padded frames cannot leak into valid ones)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2))
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)).transpose(1, 2)).transpose(1, 2)


@MODELS.register("spectral_speaker_encoder")
class SpectralSpeakerEncoder(nn.Module):
    """Enrollment waveform -> speaker embedding, trained jointly with the extractor.

    Log-mel (or log-magnitude) STFT with per-utterance mean normalisation, a TDNN-like stack of
    dilated 1-D convs (channels, layers), masked mean(+std) pooling over valid frames only,
    and a Linear projection to ``emb_dim``. Padding beyond ``lengths`` does not change the
    result.

    ``forward(enrollment (B, Te), lengths (B,) | None) -> (B, emb_dim)``.
    """

    uses_enrollment = True

    def __init__(
        self,
        emb_dim: int = 256,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int | None = 400,
        hop_length: int = 160,
        feature: str = "logmel",
        n_mels: int = 80,
        channels: int = 256,
        layers: int = 4,
        kernel_size: int = 3,
        pooling: str = "mean_std",
        normalize: bool = False,
    ):
        super().__init__()
        if feature not in ("logmel", "logmag"):
            raise ValueError(f"feature must be 'logmel' or 'logmag', got {feature!r}")
        if pooling not in ("mean", "mean_std"):
            raise ValueError(f"pooling must be 'mean' or 'mean_std', got {pooling!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"option 'normalize' must be a bool, got {normalize!r}")
        for name, value in (("emb_dim", emb_dim), ("n_fft", n_fft), ("hop_length", hop_length),
                            ("channels", channels), ("layers", layers), ("kernel_size", kernel_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"option '{name}' must be a positive int, got {value!r}")
        self.output_dim = emb_dim
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.win_length = win_length or n_fft
        if self.win_length > n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {n_fft}")
        self.feature, self.pooling, self.normalize = feature, pooling, normalize
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        if feature == "logmel":
            self.register_buffer("mel", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)
            in_dim = n_mels
        else:
            self.mel = None
            in_dim = n_fft // 2 + 1
        dilations = [1] + [2 ** min(i, 2) for i in range(1, layers)]  # 1, 2, 4, 4, ...
        self.layers = nn.ModuleList(
            _ConvLayer(in_dim if i == 0 else channels, channels, kernel_size, d) for i, d in enumerate(dilations)
        )
        self.proj = nn.Linear(channels * (2 if pooling == "mean_std" else 1), emb_dim)

    def valid_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Samples (B,) -> number of STFT frames (B,) lying wholly inside the valid samples (>= 1)."""
        return torch.clamp((lengths - self.n_fft) // self.hop_length + 1, min=1)

    def features(self, enrollment: torch.Tensor) -> torch.Tensor:
        """(B, Te) -> log spectral features (B, n_feat, N), uncentred frames (no reflect padding,
        so a frame depends only on its own samples)."""
        wav = enrollment.float()
        if wav.shape[-1] < self.n_fft:
            wav = F.pad(wav, (0, self.n_fft - wav.shape[-1]))
        real, imag = stft_parts(wav, self.n_fft, self.hop_length, self.win_length, self.window)
        power = real**2 + imag**2
        if self.mel is not None:
            power = torch.matmul(self.mel, power)
        return torch.log(power + 1e-6)

    def forward(self, enrollment: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Te) waveform, (B,) valid samples -> (B, emb_dim)."""
        if enrollment.dim() != 2:
            raise ValueError(f"enrollment must be (B, Te), got {tuple(enrollment.shape)}")
        if lengths is None:
            lengths = torch.full((enrollment.shape[0],), enrollment.shape[-1], device=enrollment.device)
        lengths = lengths.to(enrollment.device)
        # zero the padding: only an enrollment shorter than one frame would otherwise see it
        valid = torch.arange(enrollment.shape[-1], device=enrollment.device)[None, :] < lengths[:, None]
        feats = self.features(enrollment * valid)
        frames = self.valid_frames(lengths)
        mask = torch.arange(feats.shape[-1], device=feats.device)[None, :] < frames[:, None]
        mean, _ = masked_mean_std(feats, mask)
        h = (feats - mean[..., None]) * mask[:, None, :]  # cepstral mean normalisation
        for layer in self.layers:
            h = layer(h) * mask[:, None, :]  # zero padded frames: the next conv sees zero padding
        mean, std = masked_mean_std(h, mask)
        pooled = torch.cat([mean, std], dim=-1) if self.pooling == "mean_std" else mean
        emb = self.proj(pooled)
        return F.normalize(emb, dim=-1) if self.normalize else emb


@MODELS.register("precomputed")
class PrecomputedEmbedding(nn.Module):
    """Pre-computed speaker embeddings (e.g. read from files), optionally projected.

    ``dim``: the external embedding size; ``emb_dim``: output size (None = ``dim``: identity,
    no parameters; otherwise a Linear(dim -> emb_dim)). ``forward(embedding (B, dim) or
    (B, 1, dim)) -> (B, emb_dim)``.
    """

    uses_enrollment = False

    def __init__(self, dim: int = 256, emb_dim: int | None = None, project: bool = False):
        super().__init__()
        if not isinstance(project, bool):
            raise TypeError(f"option 'project' must be a bool, got {project!r}")
        self.input_dim = dim
        self.output_dim = emb_dim or dim
        self.proj = nn.Linear(dim, self.output_dim) if (project or self.output_dim != dim) else None

    def forward(self, embedding: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dim) or (B, 1, dim) -> (B, emb_dim); ``lengths`` is ignored (interface parity)."""
        if embedding.dim() == 3 and embedding.shape[1] == 1:
            embedding = embedding[:, 0]
        if embedding.dim() != 2 or embedding.shape[-1] != self.input_dim:
            raise ValueError(f"embedding must be (B, {self.input_dim}), got {tuple(embedding.shape)}")
        embedding = embedding.float()
        return self.proj(embedding) if self.proj is not None else embedding


# ----------------------------------------------------------------------------------------------
# Speaker-verification network (trained by the speaker_encoder system) and its use as a clue
# ----------------------------------------------------------------------------------------------
class _LogMel(nn.Module):
    """Waveform (B, T) -> log-mel (B, n_mels, N) on uncentred frames, and the valid-frame mask."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int | None, hop_length: int, n_mels: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        if self.win_length > n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {n_fft}")
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("mel", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths[:, None]
        wav = (wav * valid).float()
        if wav.shape[-1] < self.n_fft:
            wav = F.pad(wav, (0, self.n_fft - wav.shape[-1]))
        real, imag = stft_parts(wav, self.n_fft, self.hop_length, self.win_length, self.window)
        feats = torch.log(torch.matmul(self.mel, real**2 + imag**2) + 1e-6)
        frames = torch.clamp((lengths - self.n_fft) // self.hop_length + 1, min=1)
        mask = torch.arange(feats.shape[-1], device=feats.device)[None, :] < frames[:, None]
        mean, _ = masked_mean_std(feats, mask)
        return (feats - mean[..., None]) * mask[:, None, :], mask  # per-utterance mean normalisation


class _SEResBlock(nn.Module):
    """ECAPA-style block: 1x1 -> dilated k-conv -> 1x1 (each ReLU + BatchNorm), masked
    squeeze-excitation, residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, se_channels: int):
        super().__init__()

        def unit(k, d):
            return nn.ModuleList([nn.Conv1d(channels, channels, k, dilation=d, padding=d * (k // 2)),
                                  nn.BatchNorm1d(channels)])

        self.units = nn.ModuleList([unit(1, 1), unit(kernel_size, dilation), unit(1, 1)])
        self.se = nn.Sequential(nn.Linear(channels, se_channels), nn.ReLU(), nn.Linear(se_channels, channels),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)
        h = x
        for conv, norm in self.units:
            h = norm(F.relu(conv(h))) * m
        mean, _ = masked_mean_std(h, mask)
        return (h * self.se(mean)[..., None] + x) * m


@MODELS.register("ecapa_tdnn")
class EcapaTdnn(nn.Module):
    """A small ECAPA-TDNN speaker-verification network: waveform -> (B, emb_dim) embedding.

    Log-mel (``n_mels``, 25/10 ms at 16 kHz), a TDNN layer, ``blocks`` SE-residual blocks
    (dilations 2, 3, 4, ...), multi-layer aggregation, masked attentive statistics pooling,
    BatchNorm + Linear to ``emb_dim``. Padding beyond ``lengths`` does not change the result in
    eval mode. ``forward(wav (B, T), lengths (B,) | None) -> (B, emb_dim)`` (not normalised);
    ``embed_features(feats, mask)`` runs the network on (augmented) features.
    """

    uses_enrollment = True

    def __init__(self, emb_dim: int = 256, sample_rate: int = 16000, n_fft: int = 512,
                 win_length: int | None = 400, hop_length: int = 160, n_mels: int = 80,
                 channels: int = 512, blocks: int = 3, kernel_size: int = 3, se_channels: int = 128,
                 attention_channels: int = 128):
        super().__init__()
        for name, value in (("emb_dim", emb_dim), ("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels),
                            ("channels", channels), ("blocks", blocks), ("kernel_size", kernel_size),
                            ("se_channels", se_channels), ("attention_channels", attention_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"option '{name}' must be a positive int, got {value!r}")
        self.output_dim, self.sample_rate = emb_dim, int(sample_rate)
        self.frontend = _LogMel(sample_rate, n_fft, win_length, hop_length, n_mels)
        self.input_norm = nn.BatchNorm1d(n_mels)
        self.tdnn = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.tdnn_norm = nn.BatchNorm1d(channels)
        self.blocks = nn.ModuleList(_SEResBlock(channels, kernel_size, 2 + i, se_channels) for i in range(blocks))
        self.mfa = nn.Conv1d(channels * blocks, channels * blocks, 1)
        self.attention = nn.Sequential(nn.Conv1d(channels * blocks, attention_channels, 1), nn.Tanh(),
                                       nn.Conv1d(attention_channels, channels * blocks, 1))
        self.pool_norm = nn.BatchNorm1d(2 * channels * blocks)
        self.proj = nn.Linear(2 * channels * blocks, emb_dim)

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> mean-normalised log-mel (B, n_mels, N) and the valid-frame mask (B, N)."""
        if wav.dim() != 2:
            raise ValueError(f"the speaker encoder takes (B, T) waveforms, got {tuple(wav.shape)}")
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1], device=wav.device)
        return self.frontend(wav, lengths.to(wav.device))

    def embed_features(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(feats.dtype)
        h = self.tdnn_norm(F.relu(self.tdnn(self.input_norm(feats) * m))) * m
        outs = []
        for block in self.blocks:
            h = block(h, mask)
            outs.append(h)
        h = F.relu(self.mfa(torch.cat(outs, dim=1))) * m
        logits = self.attention(h).masked_fill(~mask[:, None, :], float("-inf"))
        w = torch.softmax(logits.float(), dim=-1).to(h.dtype)
        mean = (h * w).sum(-1)
        std = torch.sqrt(((h - mean[..., None]) ** 2 * w).sum(-1).clamp(min=1e-5))
        return self.proj(self.pool_norm(torch.cat([mean, std], dim=1)))

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed_features(*self.features(wav, lengths))


def resolve_pretrained_speakers(model_cfg, sample_rate: int | None = None):
    """A copy of a model config where every ``{name: pretrained, ckpt: ...}`` also records the
    encoder's model config (``encoder``), so the extractor rebuilds without the encoder file.
    An encoder trained at another rate than ``sample_rate`` (the extractor's) is refused."""
    if isinstance(model_cfg, list):
        return [resolve_pretrained_speakers(v, sample_rate) for v in model_cfg]
    if not isinstance(model_cfg, dict):
        return model_cfg
    out = {k: resolve_pretrained_speakers(v, sample_rate) for k, v in model_cfg.items()}
    if out.get("name") == "pretrained":
        if not out.get("encoder"):
            if not out.get("ckpt"):
                raise DdtseError("speaker 'pretrained' needs ckpt: <speaker-encoder checkpoint>")
            out["encoder"], _ = read_speaker_encoder_checkpoint(out["ckpt"])
        rate = out["encoder"].get("sample_rate") if isinstance(out["encoder"], dict) else None
        if sample_rate and rate and int(rate) != int(sample_rate):
            raise DdtseError(f"speaker encoder {out.get('ckpt')} works at {rate} Hz but this extractor at "
                             f"{sample_rate} Hz; train the encoder with data.sample_rate={sample_rate} "
                             f"model.sample_rate={sample_rate}")
    return out


@MODELS.register("pretrained")
class PretrainedSpeakerEncoder(nn.Module):
    """A speaker clue from a trained speaker encoder (``train.py`` with system ``speaker_encoder``).

    ``ckpt``: the encoder checkpoint (weights read with weights_only); ``encoder``: its model config
    (recorded into the extractor's config when the extractor is built, so an extractor checkpoint,
    whose state_dict holds these weights, rebuilds without ``ckpt``); ``freeze`` (default true):
    no gradient and eval mode kept (BatchNorm statistics fixed); ``normalize``: L2-normalise the
    embedding; ``emb_dim``: optional Linear projection to this width (trainable).
    ``forward(enrollment (B, Te), lengths (B,) | None) -> (B, output_dim)``.
    """

    uses_enrollment = True

    def __init__(self, ckpt: str | None = None, freeze: bool = True, encoder: dict | None = None,
                 normalize: bool = True, emb_dim: int | None = None):
        super().__init__()
        for name, value in (("freeze", freeze), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise DdtseError(f"speaker 'pretrained': option '{name}' must be true or false, got {value!r}")
        state = None
        if ckpt and Path(ckpt).is_file():
            try:
                stored, file_state = read_speaker_encoder_checkpoint(ckpt)
            except DdtseError:
                if not encoder:
                    raise
                stored, file_state = None, None  # rebuilt from the recorded config (weights: the extractor's)
            encoder = encoder or stored
            if stored == encoder:  # a file replaced by another encoder since is not read
                state = file_state
        elif not encoder:
            raise DdtseError(f"speaker 'pretrained': speaker-encoder checkpoint not found: {ckpt}"
                             if ckpt else "speaker 'pretrained' needs ckpt: <speaker-encoder checkpoint>")
        self.net = build_encoder(encoder, state, ckpt)
        self.freeze, self.normalize = freeze, normalize
        self.sample_rate = getattr(self.net, "sample_rate", None)
        dim = int(self.net.output_dim)
        self.proj = nn.Linear(dim, int(emb_dim)) if emb_dim and int(emb_dim) != dim else None
        self.output_dim = int(emb_dim) if self.proj is not None else dim
        if freeze:
            self.net.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.net.eval()
        return self

    def forward(self, enrollment: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            emb = self.net(enrollment, lengths)
        if self.normalize:
            emb = F.normalize(emb, dim=-1)
        return self.proj(emb) if self.proj is not None else emb
