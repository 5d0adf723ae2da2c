"""TD-SpeakerBeam (Conv-TasNet extractor) with mul/add/muladd/concat, ASA and ASA-MP adaptation, and IPD.

Re-implemented from the papers (Delcroix et al. 2020; Han et al., arXiv 2010.10923) and the
reference notes in the project's spec; no code is taken from speakerbeam or asa.

Shapes: B batch, N encoder filters, C_b = ``B`` bottleneck channels, K encoder frames.

Framing. The encoder is Conv1d(1 -> N, kernel L, stride S = L/2). An input of T samples is
zero-padded on the right to ``T_pad = L + (K - 1) S`` with ``K = frames_for(T) = 1 + ceil(max(T - L, 0) / S)``
frames; the ConvTranspose1d decoder returns ``T_pad`` samples, cropped back to exactly T.

Adaptation. It is applied to the *output* of block ``adapt_layer`` (0-based over the X*R blocks,
i.e. after the residual addition: what the next block sees). With ``skip: true`` and
``adapt_skip: true`` the embedding is twice as wide; its second half adapts that block's
skip output the same way (the BUT Libri2Mix recipe). Kinds (``e`` = embedding, ``h`` = frames):

- ``mul``: h * e;  ``add``: h + e;  ``muladd``: h * e[:C] + e[C:] (embedding 2C);
- ``concat``: Linear over [h; e] per frame (embedding ``embed_dim`` wide);
- ``asa``: attention-based scaling, s_t = <h_t, e>, a = softmax_t(s), h_t <- h_t * e * (1 + a_t);
- ``asa_mp``: the same attention over frames average-pooled with kernel = stride = ``mp_kernel``
  (no parameters). When K is not a multiple of ``mp_kernel`` the last pooled frame averages only
  the remaining ``K mod mp_kernel`` frames (ceil mode, no zero-padding bias); the scaling is
  upsampled by repeating each pooled value ``mp_kernel`` times and cropping to K frames.
  ASA adds no parameters; it needs the embedding width to equal the bottleneck B (B == N_e).

Embedding. An auxiliary, unshared network: Conv1d encoder (N filters, L, S) + ReLU ->
[cLN + 1x1 N -> ``aux_bottleneck``] -> ``aux_blocks`` TCN blocks (dilations 1, 2, 4, ...) ->
[1x1 to the embedding width when ``aux_out_proj``] -> mean over the valid frames of each
enrollment (``enrollment_lengths``; padded frames are excluded). With ``speaker:`` (a speaker
module config, e.g. ``{name: pretrained, ckpt: ..., freeze: true}`` or
``{name: spectral_speaker_encoder}``) that module gives the embedding instead and no aux net is
built (the ``aux_*`` options are unused); a Linear maps its ``output_dim`` to the adaptation width
when they differ. ASA/ASA-MP read only the pooled embedding, so they work with it too (the
projection gives ASA its B-wide vector). Pre-computed embeddings (``precomputed``) are not
supported here (use ddtse_net).

IPD (``ipd: true``, mixture (B, 2, T)). A Hann-windowed STFT with n_fft = win = ``ipd_fft_factor``*L
and hop S, on the signal padded by (n_fft - L)/2 on both sides, so that STFT frame k is centred on
encoder frame k and both have K frames. IPD = angle(X_2) - angle(X_1) per bin, represented as
[cos; sin] (2F channels), projected by a 1x1 conv to ``ipd_dim`` channels and *concatenated* to
the cLN-normalised encoder output of the reference mic (channel ``ref_channel``) before the
bottleneck. The mask is applied to the reference mic's encoder output.

Outputs. ``forward`` returns the estimate (B, T). With ``return_aux=True`` it returns a dict
``{"estimate": (B, T), "embedding": (B, E), "speaker_logits": (B, num_speakers) | None}``;
the model keeps no per-call state (safe to deepcopy for EMA at any time).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ddtse.audio.spectral import stft_parts
from ddtse.errors import DdtseError
from ddtse.registry import MODELS

ADAPTATIONS = ("mul", "add", "muladd", "concat", "asa", "asa_mp")


class ChannelLayerNorm(nn.Module):
    """cLN: LayerNorm over channels at every frame of (B, C, K)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def global_layer_norm(channels: int) -> nn.Module:
    """gLN: normalise over channels and time with a per-channel affine (= GroupNorm with 1 group)."""
    return nn.GroupNorm(1, channels, eps=1e-8)


class TCNBlock(nn.Module):
    """1x1 -> PReLU -> gLN -> depthwise dilated conv -> PReLU -> gLN -> 1x1 (+ skip 1x1); residual."""

    def __init__(self, channels: int, hidden: int, kernel: int, dilation: int, skip: int = 0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, hidden, 1),
            nn.PReLU(),
            global_layer_norm(hidden),
            nn.Conv1d(hidden, hidden, kernel, dilation=dilation,
                      padding=dilation * (kernel - 1) // 2, groups=hidden),
            nn.PReLU(),
            global_layer_norm(hidden),
        )
        self.res_conv = nn.Conv1d(hidden, channels, 1)
        self.skip_conv = nn.Conv1d(hidden, skip, 1) if skip else None

    def forward(self, x: torch.Tensor):
        """(B, C, K) -> (output (B, C, K), skip (B, S, K) or None)."""
        y = self.net(x)
        skip = self.skip_conv(y) if self.skip_conv is not None else None
        return x + self.res_conv(y), skip


def pool_frames(h: torch.Tensor, kernel: int) -> torch.Tensor:
    """Average-pool (B, C, K) with kernel = stride = ``kernel``, ceil mode: (B, C, ceil(K/kernel)).

    The last window averages only the frames that exist (K mod kernel of them when non-zero)."""
    return F.avg_pool1d(h, kernel, stride=kernel, ceil_mode=True)  # the last window: only its frames


def asa_scaling(h: torch.Tensor, e: torch.Tensor, pool: int = 1,
                frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """ASA scaling A (B, C, K) for frames h (B, C, K) and embedding e (B, C): A_t = e (1 + softmax_t <h_t, e>).

    ``pool`` > 1 is the MP variant (attention over frames pooled by ``pool_frames``, A upsampled by
    repetition). ``frame_lengths`` (B,) masks padded frames out of the softmax."""
    k = h.shape[-1]
    hp = pool_frames(h, pool) if pool > 1 else h
    scores = torch.einsum("bct,bc->bt", hp, e)
    if frame_lengths is not None:
        valid = torch.div(frame_lengths + pool - 1, pool, rounding_mode="floor").clamp(1, hp.shape[-1])
        idx = torch.arange(hp.shape[-1], device=h.device)
        scores = scores.masked_fill(idx[None, :] >= valid[:, None], float("-inf"))
    alpha = torch.softmax(scores.float(), dim=-1).to(h.dtype)
    if pool > 1:
        alpha = alpha.repeat_interleave(pool, dim=-1)[:, :k]
    return e[:, :, None] * (1.0 + alpha[:, None, :])


class Adaptation(nn.Module):
    """Fuses an embedding into frames (B, C, K); see the module docstring for the kinds."""

    def __init__(self, kind: str, channels: int, embed_dim: int | None = None, mp_kernel: int = 20):
        super().__init__()
        if kind not in ADAPTATIONS:
            raise DdtseError(f"unknown adaptation '{kind}' (known: {', '.join(ADAPTATIONS)})")
        self.kind, self.channels, self.mp_kernel = kind, channels, int(mp_kernel)
        if kind == "concat":
            self.embed_dim = int(embed_dim or channels)
            self.proj = nn.Conv1d(channels + self.embed_dim, channels, 1)
        else:
            self.embed_dim = 2 * channels if kind == "muladd" else channels

    def forward(self, h: torch.Tensor, e: torch.Tensor, frame_lengths: torch.Tensor | None = None):
        if self.kind == "mul":
            return h * e[:, :, None]
        if self.kind == "add":
            return h + e[:, :, None]
        if self.kind == "muladd":
            scale, bias = e.split(self.channels, dim=1)
            return h * scale[:, :, None] + bias[:, :, None]
        if self.kind == "concat":
            return self.proj(torch.cat([h, e[:, :, None].expand(-1, -1, h.shape[-1])], dim=1))
        pool = self.mp_kernel if self.kind == "asa_mp" else 1
        return h * asa_scaling(h, e, pool, frame_lengths)


@MODELS.register("td_speakerbeam")
class TDSpeakerBeam(nn.Module):
    """TD-SpeakerBeam: ``forward(mixture (B, C, T), enrollment (B, Te), enrollment_lengths (B,) | None) -> (B, T)``.

    Options: N encoder filters, L kernel (stride L/2), B bottleneck, H block hidden, P depthwise
    kernel, X blocks per repeat, R repeats, ``skip`` (0 = no skip path, else its channels),
    ``adaptation`` (mul|add|muladd|concat|asa|asa_mp), ``adapt_layer`` (0-based block index),
    ``adapt_skip``, ``embed_dim`` (concat only), ``mp_kernel``, aux net (``aux_blocks``,
    ``aux_hidden``, ``aux_bottleneck`` 0 = none, ``aux_out_proj``), ``num_speakers`` (0 = no
    speaker head), ``ipd``/``ipd_fft_factor``/``ipd_dim``/``ref_channel``,
    ``gradient_checkpointing`` (over TCN blocks), ``sample_rate`` (informative), ``speaker``
    (an external speaker module config replacing the aux net, see the module docstring).
    """

    # the extractor-model contract (ddtse/systems/discriminative.py MODEL_CONTRACT)
    needs_enrollment = True
    accepts_lengths = True
    returns_aux = True

    def __init__(self, N: int = 256, L: int = 20, B: int = 256, H: int = 512, P: int = 3,
                 X: int = 8, R: int = 4, skip: int = 0, adaptation: str = "mul",
                 adapt_layer: int = 0, adapt_skip: bool = False, embed_dim: int | None = None,
                 mp_kernel: int = 20, aux_blocks: int = 1, aux_hidden: int | None = None,
                 aux_bottleneck: int = 0, aux_out_proj: bool = False, num_speakers: int = 0,
                 ipd: bool = False, ipd_fft_factor: int = 4, ipd_dim: int = 64, ref_channel: int = 0,
                 gradient_checkpointing: bool = False, sample_rate: int | None = None,
                 speaker: dict | None = None):
        super().__init__()
        if L < 2 or L % 2:
            raise DdtseError(f"td_speakerbeam: L must be even and >= 2 (stride L/2), got {L}")
        n_blocks = X * R
        if not 0 <= adapt_layer < n_blocks:
            raise DdtseError(f"td_speakerbeam: adapt_layer {adapt_layer} outside 0..{n_blocks - 1} (X*R blocks)")
        if adapt_skip and not skip:
            raise DdtseError("td_speakerbeam: adapt_skip needs the skip path (skip > 0)")
        if adapt_skip and adaptation in ("asa", "asa_mp"):
            raise DdtseError("td_speakerbeam: adapt_skip is not supported with ASA adaptation")
        if mp_kernel < 1:
            raise DdtseError(f"td_speakerbeam: mp_kernel must be >= 1, got {mp_kernel}")
        self.N, self.L, self.stride, self.B = N, L, L // 2, B
        self.adapt_layer, self.adapt_skip = adapt_layer, bool(adapt_skip)
        self.adaptation_kind = adaptation
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.ipd, self.ref_channel = bool(ipd), int(ref_channel)
        self.sample_rate = sample_rate

        # mixture path
        self.encoder = nn.Conv1d(1, N, L, stride=self.stride, bias=False)
        self.enc_norm = ChannelLayerNorm(N)
        if self.ipd:
            self.ipd_fft = int(ipd_fft_factor) * L
            if ipd_fft_factor < 1:
                raise DdtseError(f"td_speakerbeam: ipd_fft_factor must be >= 1, got {ipd_fft_factor}")
            self.register_buffer("ipd_window", torch.hann_window(self.ipd_fft), persistent=False)
            self.ipd_proj = nn.Conv1d(2 * (self.ipd_fft // 2 + 1), ipd_dim, 1)
        self.bottleneck = nn.Conv1d(N + (ipd_dim if self.ipd else 0), B, 1)
        self.blocks = nn.ModuleList(
            TCNBlock(B, H, P, 2 ** (i % X), skip) for i in range(n_blocks)
        )
        self.adapt = Adaptation(adaptation, B, embed_dim, mp_kernel)
        self.adapt_skip_layer = Adaptation(adaptation, skip, embed_dim, mp_kernel) if adapt_skip else None
        out_in = skip if skip else B
        self.mask_net = nn.Sequential(nn.PReLU(), nn.Conv1d(out_in, N, 1))
        self.decoder = nn.ConvTranspose1d(N, 1, L, stride=self.stride, bias=False)

        # auxiliary (enrollment) network, unshared; or an external speaker module
        self.embed_dim = self.adapt.embed_dim + (self.adapt_skip_layer.embed_dim if adapt_skip else 0)
        self.speaker = None
        if speaker is not None:
            self._build_external_speaker(speaker)
            self.speaker_head = nn.Linear(self.embed_dim, num_speakers) if num_speakers else None
            return
        self.aux_encoder = nn.Conv1d(1, N, L, stride=self.stride, bias=False)
        aux_ch = aux_bottleneck or N
        self.aux_in = (nn.Sequential(ChannelLayerNorm(N), nn.Conv1d(N, aux_ch, 1))
                       if aux_bottleneck else nn.Identity())
        self.aux_blocks = nn.ModuleList(
            TCNBlock(aux_ch, aux_hidden or H, P, 2 ** i) for i in range(aux_blocks)
        )
        if aux_out_proj:
            self.aux_out = nn.Conv1d(aux_ch, self.embed_dim, 1)
        elif aux_ch != self.embed_dim:
            raise DdtseError(
                f"td_speakerbeam: adaptation '{adaptation}' needs the enrollment embedding width N_e to be "
                f"{self.embed_dim} (from B = {B}), but the auxiliary network gives N_e = {aux_ch} "
                f"(aux_bottleneck or N = {N}); set B = N (ASA requires B == N_e), aux_bottleneck, "
                "or aux_out_proj: true"
            )
        else:
            self.aux_out = nn.Identity()
        self.speaker_head = nn.Linear(self.embed_dim, num_speakers) if num_speakers else None

    def _build_external_speaker(self, speaker: dict) -> None:
        if not isinstance(speaker, dict) or "name" not in speaker:
            raise DdtseError(f"td_speakerbeam: 'speaker' must be a config dict with a 'name', got {speaker!r}")
        self.speaker = MODELS.build(speaker)
        if not getattr(self.speaker, "uses_enrollment", True):
            raise DdtseError(f"td_speakerbeam: speaker module '{speaker['name']}' does not read the enrollment; "
                             "pre-computed embeddings are supported by ddtse_net only")
        dim = int(self.speaker.output_dim)
        self.speaker_proj = nn.Linear(dim, self.embed_dim) if dim != self.embed_dim else nn.Identity()

    @property
    def in_audio_channels(self) -> int:
        """Mixture channels the model reads: 2 with IPD, else 1 (channel ``ref_channel`` of any input)."""
        return 2 if self.ipd else 1

    @property
    def min_input_samples(self) -> int:
        """Shortest input: one encoder frame (L samples)."""
        return self.L

    # -- framing -----------------------------------------------------------------------------
    def frames_for(self, length):
        """Encoder frames K for ``length`` samples (int or int tensor): 1 + ceil(max(T - L, 0) / S)."""
        if torch.is_tensor(length):
            extra = (length - self.L).clamp_min(0)
            return 1 + torch.div(extra + self.stride - 1, self.stride, rounding_mode="floor")
        return 1 + math.ceil(max(int(length) - self.L, 0) / self.stride)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        return F.pad(x, (0, self.L + (self.frames_for(t) - 1) * self.stride - t))

    # -- parts -------------------------------------------------------------------------------
    def ipd_features(self, mixture: torch.Tensor) -> torch.Tensor:
        """IPD features (B, 2F, K) of a two-channel mixture (B, 2, T): [cos; sin] of angle(X2) - angle(X1)."""
        x = self._pad(mixture).float()
        side = (self.ipd_fft - self.L) // 2
        x = F.pad(x, (side, self.ipd_fft - self.L - side))
        b = x.shape[0]
        real, imag = stft_parts(x.reshape(2 * b, -1), self.ipd_fft, self.stride, self.ipd_fft,
                                self.ipd_window.float())
        real, imag = (part.reshape(b, 2, *part.shape[-2:]) for part in (real, imag))  # (B, 2, F, K)
        # unit phasors (angle 0 where a bin is zero, as torch.angle), then cos/sin of their angle
        # difference without atan2 (whose exported form is undefined at 0/0)
        mag = torch.sqrt(real**2 + imag**2)
        zero = mag == 0
        ur = torch.where(zero, torch.ones_like(real), real / mag.clamp_min(1e-30))
        ui = torch.where(zero, torch.zeros_like(imag), imag / mag.clamp_min(1e-30))
        cos = ur[:, 1] * ur[:, 0] + ui[:, 1] * ui[:, 0]
        sin = ui[:, 1] * ur[:, 0] - ur[:, 1] * ui[:, 0]
        return torch.cat([cos, sin], dim=1)

    def embed(self, enrollment: torch.Tensor, enrollment_lengths: torch.Tensor | None = None):
        """Speaker embedding (B, E) of enrollment (B, Te): mean over the valid frames."""
        if enrollment.dim() == 3:
            enrollment = enrollment[:, 0]
        if self.speaker is not None:
            return self.speaker_proj(self.speaker(enrollment, enrollment_lengths))
        z = F.relu(self.aux_encoder(self._pad(enrollment)[:, None]))
        z = self.aux_in(z)
        for block in self.aux_blocks:
            z = block(z)[0]
        z = self.aux_out(z)
        k = z.shape[-1]
        if enrollment_lengths is None:
            return z.mean(-1)
        frames = self.frames_for(enrollment_lengths.to(z.device).long()).clamp(1, k)
        mask = (torch.arange(k, device=z.device)[None, :] < frames[:, None]).to(z.dtype)
        return (z * mask[:, None, :]).sum(-1) / frames[:, None].to(z.dtype)

    def _block(self, block: TCNBlock, h: torch.Tensor):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, use_reentrant=False)
        return block(h)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, mixture: torch.Tensor, enrollment: torch.Tensor,
                enrollment_lengths: torch.Tensor | None = None, *,
                lengths: torch.Tensor | None = None, return_aux: bool = False):
        """mixture (B, C, T) or (B, T), enrollment (B, Te) -> estimate (B, T) (dict when ``return_aux``).

        ``lengths`` (B,) valid mixture samples, optional: masks padded frames out of ASA's softmax."""
        if mixture.dim() == 2:
            mixture = mixture[:, None]
        if mixture.dim() != 3:
            raise DdtseError(f"td_speakerbeam: mixture must be (B, C, T), got {tuple(mixture.shape)}")
        if enrollment is None:
            raise DdtseError("td_speakerbeam needs an enrollment recording")
        channels, t = mixture.shape[1], mixture.shape[-1]
        if self.ipd and channels != 2:
            raise DdtseError(f"td_speakerbeam with ipd: true needs a two-channel mixture, got {channels} channel(s)")
        if self.ref_channel >= channels:
            raise DdtseError(f"td_speakerbeam: ref_channel {self.ref_channel} but the mixture has {channels} channel(s)")
        ref = self._pad(mixture[:, self.ref_channel])
        w = F.relu(self.encoder(ref[:, None]))  # (B, N, K)
        feats = self.enc_norm(w)
        if self.ipd:
            feats = torch.cat([feats, self.ipd_proj(self.ipd_features(mixture).to(w.dtype))], dim=1)
        h = self.bottleneck(feats)
        e = self.embed(enrollment, enrollment_lengths)
        e_main, e_skip = (e.split([self.adapt.embed_dim, self.embed_dim - self.adapt.embed_dim], dim=1)
                          if self.adapt_skip else (e, None))
        frame_lengths = None if lengths is None else self.frames_for(lengths.to(h.device).long())
        skip_sum = None
        for i, block in enumerate(self.blocks):
            h, skip = self._block(block, h)
            if i == self.adapt_layer:
                h = self.adapt(h, e_main, frame_lengths)
                if self.adapt_skip_layer is not None:
                    skip = self.adapt_skip_layer(skip, e_skip, frame_lengths)
            if skip is not None:
                skip_sum = skip if skip_sum is None else skip_sum + skip
        mask = F.relu(self.mask_net(skip_sum if skip_sum is not None else h))
        estimate = self.decoder(w * mask)[:, 0, :t]
        if not return_aux:
            return estimate
        logits = self.speaker_head(e) if self.speaker_head is not None else None
        return {"estimate": estimate, "embedding": e, "speaker_logits": logits}
