"""NCSN++ (score_sde / SGMSE+) U-Net on compressed complex STFTs, with DDTSE speaker conditioning.

Pure PyTorch: the FIR up/down-sampling of ``upfirdn2d`` is written as depthwise (transposed)
convolutions, so the same code runs on CPU and GPU without compiled extensions.

Speaker conditioning follows DDTSE (spec section 6) with the reference code's defects fixed
(spec section 9): FiLM acts per channel, broadcast over frequency and time, and the bottleneck
fusion pairs the embedding with each position's channel vector.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ddtse.errors import DdtseError
from ddtse.registry import MODELS

__all__ = [
    "NCSNpp",
    "ConditionalNCSNpp",
    "ncsnpp_preset",
    "NCSNPP_PRESETS",
    "upsample_fir",
    "downsample_fir",
]


# ------------------------------------------------------------------------------------------
# option validation
# ------------------------------------------------------------------------------------------
class OptionError(DdtseError, ValueError):
    """A bad constructor option: a ValueError that the CLI also reports as a user error."""


class OptionTypeError(DdtseError, TypeError):
    """An option of the wrong type (e.g. the string "False" for a bool)."""


def _check_bool(name: str, value) -> bool:
    """Reject anything but a real bool: ``bool("False")`` is True (the reference's defect)."""
    if not isinstance(value, bool):
        raise OptionTypeError(f"option '{name}' must be a bool (true/false), got {value!r} ({type(value).__name__})")
    return value


def _check_choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise OptionError(f"option '{name}' must be one of {list(choices)}, got {value!r}")
    return value.lower()


def _int_tuple(name: str, value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise OptionTypeError(f"option '{name}' must be a list of ints, got {value!r}")
    return tuple(value)


# ------------------------------------------------------------------------------------------
# initialisation (score_sde's default_init: variance scaling, fan_avg, uniform)
# ------------------------------------------------------------------------------------------
def _variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    scale = 1e-10 if scale == 0 else scale  # score_sde: init_scale 0 means "almost zero"
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    variance = scale / ((fan_in + fan_out) / 2.0)
    bound = math.sqrt(3.0 * variance)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def _conv(in_ch: int, out_ch: int, kernel: int, init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    _variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    _variance_scaling_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(C // 4, 32) groups (lowered to a divisor of C for unusual widths)."""
    groups = max(1, min(channels // 4, 32))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6)


# ------------------------------------------------------------------------------------------
# FIR resampling (upfirdn2d, native path, as ordinary convolutions)
# ------------------------------------------------------------------------------------------
def _fir_kernel_2d(kernel: Sequence[float], gain: float) -> torch.Tensor:
    k = torch.as_tensor(kernel, dtype=torch.float64)
    k2 = torch.outer(k, k)
    return (k2 / k2.sum() * gain).float()


def upsample_fir(x: torch.Tensor, kernel_2d: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zero-insertion then FIR, as ``upsample_2d(x, k, 2)``.

    ``kernel_2d`` is the separable kernel already scaled by gain·factor² (sums to 4)."""
    channels, taps = x.shape[1], kernel_2d.shape[-1]
    # conv_transpose2d computes the full convolution of the zero-stuffed input with the kernel;
    # upfirdn2d's padding (p+1)//2 + 1 left for p = taps - 2 crops (taps - 2) // 2 at each side
    # (for even taps).
    weight = kernel_2d.to(x.dtype).expand(channels, 1, taps, taps)
    return F.conv_transpose2d(x, weight, stride=2, padding=(taps - 2) // 2, groups=channels)


def downsample_fir(x: torch.Tensor, kernel_2d: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): FIR then decimation, as ``downsample_2d(x, k, 2)``."""
    channels, taps = x.shape[1], kernel_2d.shape[-1]
    pad = taps - 2
    # conv2d is a correlation; upfirdn2d convolves, so flip the kernel
    weight = torch.flip(kernel_2d, dims=(0, 1)).to(x.dtype).expand(channels, 1, taps, taps)
    x = F.pad(x, ((pad + 1) // 2, pad // 2, (pad + 1) // 2, pad // 2))
    return F.conv2d(x, weight, stride=2, groups=channels)


class _Resample(nn.Module):
    """Parameter-free 2× up- or down-sampling: FIR (``fir=True``) or nearest / 2×2 average."""

    def __init__(self, up: bool, fir: bool, fir_kernel: Sequence[float]):
        super().__init__()
        self.up, self.fir = up, fir
        if fir:
            if len(fir_kernel) < 2 or len(fir_kernel) % 2:
                raise OptionError(f"fir_kernel must have an even number of taps, got {list(fir_kernel)}")
            self.register_buffer("kernel", _fir_kernel_2d(fir_kernel, 4.0 if up else 1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return upsample_fir(x, self.kernel) if self.up else downsample_fir(x, self.kernel)
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.avg_pool2d(x, 2)


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------
class GaussianFourierProjection(nn.Module):
    """(B,) -> (B, 2·size): [sin(2π W s), cos(2π W s)] with fixed random W ~ N(0, scale²)."""

    def __init__(self, size: int, scale: float):
        super().__init__()
        # a persistent buffer (the reference uses a frozen Parameter: same state, 128 fewer
        # "parameters" in the count, and optimisers / EMA need not know about it)
        self.register_buffer("W", torch.randn(size) * scale)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        proj = s[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


#: how FiLM and the bottleneck fusion read (B, C, F, N) features: "per_channel" (ours, correct)
#: or "slt2024" (the DDTSE authors' code: a plain reshape to (B, F·N, C) without a permute, which
#: scrambles channels and positions; only for networks imported from their checkpoints)
FILM_LAYOUTS = ("per_channel", "slt2024")


def _positions(h: torch.Tensor, layout: str) -> torch.Tensor:
    """(B, C, F, N) -> (B, F, N, C): each position's channel vector ("per_channel"), or the
    reference's raw reinterpretation of the NCHW memory as (B, F, N, C) ("slt2024")."""
    b, c, f, n = h.shape
    if layout == "slt2024":
        return h.reshape(b, f, n, c)
    return h.permute(0, 2, 3, 1)


class FiLM(nn.Module):
    """Per-channel feature-wise modulation: h + γ(e)⊙h + β(e), γ, β ∈ R^C broadcast over (F, N).

    With ``layout="slt2024"`` the modulated term is computed on the reference's scrambled view
    of h (``_positions``) and returned to (B, C, F, N) by a permute, as the DDTSE authors' code does.
    ``forward(h (B, C, F, N), emb (B, D)) -> (B, C, F, N)``."""

    def __init__(self, emb_dim: int, channels: int, layout: str = "per_channel"):
        super().__init__()
        self.gamma = nn.Linear(emb_dim, channels)
        self.beta = nn.Linear(emb_dim, channels)
        self.layout = layout

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.layout == "slt2024":
            gamma = self.gamma(emb)[:, None, None, :]
            beta = self.beta(emb)[:, None, None, :]
            return h + (gamma * _positions(h, self.layout) + beta).permute(0, 3, 1, 2)
        gamma = self.gamma(emb)[:, :, None, None]
        beta = self.beta(emb)[:, :, None, None]
        return h + gamma * h + beta


class BottleneckFusion(nn.Module):
    """Per-position Linear(C + D -> C) over the concatenation [h; e].

    ``forward(h (B, C, F, N), emb (B, D)) -> (B, C, F, N)``."""

    def __init__(self, channels: int, emb_dim: int, layout: str = "per_channel"):
        super().__init__()
        self.proj = nn.Linear(channels + emb_dim, channels)
        self.layout = layout
        self.contiguous_output = False

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, c, f, n = h.shape
        positions = _positions(h, self.layout)  # (B, F, N, C): channel vector of each position
        e = emb[:, None, None, :].expand(b, f, n, emb.shape[-1])
        out = self.proj(torch.cat([positions, e], dim=-1)).permute(0, 3, 1, 2)
        # GroupNorm's forward-mode AD (torch.func.jvp, MeanFlow) refuses a permuted view; made
        # contiguous only there, so that existing networks compute exactly as before
        return out.contiguous() if self.contiguous_output else out


class AttnBlock(nn.Module):
    """Single-head self-attention over all (F, N) positions (score_sde AttnBlockpp)."""

    def __init__(self, channels: int, skip_rescale: bool, init_scale: float):
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = _conv(channels, channels, 1)
        self.k = _conv(channels, channels, 1)
        self.v = _conv(channels, channels, 1)
        self.out = _conv(channels, channels, 1, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, n = x.shape
        h = self.norm(x)
        q, k, v = (m(h).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C), as the reference
        h = self.out(h[:, 0].transpose(1, 2).reshape(b, c, f, n))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class ResBlock(nn.Module):
    """BigGAN-style residual block (score_sde ResnetBlockBigGANpp) with optional up/down
    sampling, time embedding (Dense_0 on act(temb)) and speaker FiLM after Conv_1.

    ``forward(x (B, Cin, F, N), temb (B, T) | None, emb (B, D) | None) -> (B, Cout, F', N')``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        temb_dim: int = 0,
        emb_dim: int = 0,
        film_layout: str = "per_channel",
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.norm_0 = _group_norm(in_ch)
        self.resample = _Resample(up, fir, fir_kernel) if (up or down) else None
        self.conv_0 = _conv(in_ch, out_ch, 3)
        self.dense_0 = _linear(temb_dim, out_ch) if temb_dim else None
        self.norm_1 = _group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv_1 = _conv(out_ch, out_ch, 3, init_scale=init_scale)
        self.film = FiLM(emb_dim, out_ch, film_layout) if emb_dim else None
        self.skip = _conv(in_ch, out_ch, 1) if (in_ch != out_ch or up or down) else None
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, emb: torch.Tensor | None = None):
        h = F.silu(self.norm_0(x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv_0(h)
        if self.dense_0 is not None:
            h = h + self.dense_0(F.silu(temb))[:, :, None, None]
        h = self.conv_1(self.dropout(F.silu(self.norm_1(h))))
        if self.film is not None:
            h = self.film(h, emb)
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


# ------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------
@MODELS.register("ncsnpp")
class NCSNpp(nn.Module):
    """NCSN++ U-Net (score_sde / SGMSE+) with optional time and speaker conditioning.

    ``forward(x (B, in_channels, F, N), emb (B, emb_dim) | None, t (B,) | None)
    -> (B, out_channels, F, N)``; F and N must be multiples of 2**(len(ch_mult) - 1).

    - DDTSE: ``in_channels=2`` (Re/Im of x_t), ``time_conditional=False``, ``emb_dim=256``,
      ``bottleneck_fusion=True``; the output is x̂0 itself.
    - SGMSE+: ``in_channels=4`` ([x_t, y]), ``time_conditional=True``; the system divides the
      output by t and negates it (not done here). ``scale_by_t=True`` (networks imported from
      sgmse checkpoints) divides by t here instead, before the output 1x1 conv as sgmse's
      ``scale_by_sigma`` does (so its bias is not divided); the system then only negates.
    - ``film_layout``: "per_channel" (default) or "slt2024", the DDTSE authors' scrambled FiLM
      and bottleneck concat (``FILM_LAYOUTS``), for networks imported from their checkpoints.

    Attention is placed at the levels whose frequency size ``freq_bins // 2**level`` is in
    ``attn_resolutions`` (decided at construction, applied by level). ``t`` is ignored when
    ``time_conditional`` is false. ``time_embedding``: "log" (SGMSE+: Fourier features of log t,
    t > 0) or "linear" (flow models: of t itself, t in [0, 1]). ``interval_conditional`` (flow
    systems, MeanFlow) adds a second Fourier embedding of ``dt = r - t``, summed into the time
    embedding; both default off, so existing checkpoints are unchanged. With BigGAN blocks the U-Net resamples inside its residual
    blocks, so ``resamp_with_conv`` (a score_sde option for DDPM blocks) changes nothing; it is
    accepted for config compatibility.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        bottleneck_attention: bool = True,
        freq_bins: int = 256,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        progressive: str = "output_skip",
        progressive_input: str = "input_skip",
        progressive_combine: str = "sum",
        time_conditional: bool = False,
        fourier_scale: float = 16.0,
        emb_dim: int = 0,
        bottleneck_fusion: bool = False,
        gradient_checkpointing: bool = False,
        film_layout: str = "per_channel",
        scale_by_t: bool = False,
        time_embedding: str = "log",
        interval_conditional: bool = False,
    ):
        super().__init__()
        for name, value in (
            ("bottleneck_attention", bottleneck_attention),
            ("resamp_with_conv", resamp_with_conv),
            ("fir", fir),
            ("skip_rescale", skip_rescale),
            ("time_conditional", time_conditional),
            ("bottleneck_fusion", bottleneck_fusion),
            ("gradient_checkpointing", gradient_checkpointing),
            ("scale_by_t", scale_by_t),
            ("interval_conditional", interval_conditional),
        ):
            _check_bool(name, value)
        time_embedding = _check_choice("time_embedding", time_embedding, ("log", "linear"))
        if interval_conditional and not time_conditional:
            raise OptionError("interval_conditional (an embedding of r - t) needs time_conditional: true")
        ch_mult = _int_tuple("ch_mult", ch_mult)
        attn_resolutions = _int_tuple("attn_resolutions", attn_resolutions) if attn_resolutions else ()
        fir_kernel = tuple(float(k) for k in fir_kernel)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("nf", nf),
                            ("num_res_blocks", num_res_blocks), ("freq_bins", freq_bins)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OptionError(f"option '{name}' must be a positive int, got {value!r}")
        if not isinstance(emb_dim, int) or isinstance(emb_dim, bool) or emb_dim < 0:
            raise OptionError(f"option 'emb_dim' must be an int >= 0, got {emb_dim!r}")
        if not ch_mult:
            raise OptionError("option 'ch_mult' must not be empty")
        if bottleneck_fusion and emb_dim == 0:
            raise OptionError("bottleneck_fusion needs a speaker embedding (emb_dim > 0)")
        progressive = _check_choice("progressive", progressive, ("none", "output_skip"))
        progressive_input = _check_choice("progressive_input", progressive_input, ("none", "input_skip"))
        combine = _check_choice("progressive_combine", progressive_combine, ("sum", "cat"))
        film_layout = _check_choice("film_layout", film_layout, FILM_LAYOUTS)
        if scale_by_t and not time_conditional:
            raise OptionError("scale_by_t divides by the time t: it needs time_conditional=true")
        self.film_layout, self.scale_by_t = film_layout, scale_by_t

        self.in_channels, self.out_channels = in_channels, out_channels
        self.nf, self.ch_mult, self.num_res_blocks = nf, ch_mult, num_res_blocks
        self.num_levels = len(ch_mult)
        self.emb_dim = emb_dim
        self.time_conditional = time_conditional
        self.time_embedding, self.interval_conditional = time_embedding, interval_conditional
        self.progressive, self.progressive_input, self.combine = progressive, progressive_input, combine
        self.skip_rescale = skip_rescale
        self.resamp_with_conv = resamp_with_conv
        self.gradient_checkpointing = gradient_checkpointing
        attn_levels = {i for i in range(self.num_levels) if freq_bins // 2**i in attn_resolutions}

        temb_dim = 0
        if time_conditional:
            temb_dim = 4 * nf
            self.time_embed = nn.ModuleDict(
                dict(
                    fourier=GaussianFourierProjection(nf, fourier_scale),
                    dense_0=_linear(2 * nf, temb_dim),
                    dense_1=_linear(temb_dim, temb_dim),
                )
            )
        if interval_conditional:  # flow models (MeanFlow): a second embedding of the interval r - t
            self.interval_embed = nn.ModuleDict(
                dict(
                    fourier=GaussianFourierProjection(nf, fourier_scale),
                    dense_0=_linear(2 * nf, temb_dim),
                    dense_1=_linear(temb_dim, temb_dim),
                )
            )

        def res_block(in_ch, out_ch=None, **kw):
            return ResBlock(in_ch, out_ch, temb_dim=temb_dim, emb_dim=emb_dim, film_layout=film_layout,
                            dropout=dropout, fir=fir,
                            fir_kernel=fir_kernel, skip_rescale=skip_rescale, init_scale=init_scale, **kw)

        def attn_block(ch):
            return AttnBlock(ch, skip_rescale=skip_rescale, init_scale=init_scale)

        # The pyramids carry `in_channels` channels (as score_sde, whose output pyramid has as
        # many channels as its input); a final 1x1 conv maps them to `out_channels`.
        pyramid_ch = in_channels
        if progressive_input == "input_skip":
            self.pyramid_downsample = _Resample(False, fir, fir_kernel)
        if progressive == "output_skip":
            self.pyramid_upsample = _Resample(True, fir, fir_kernel)

        self.conv_in = _conv(in_channels, nf, 3)
        skip_channels = [nf]
        ch = nf
        # down path: per level, blocks (+attention), then a down-block (+input-skip combine)
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList()
            stage["attns"] = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage["blocks"].append(res_block(ch, nf * mult))
                ch = nf * mult
                if level in attn_levels:
                    stage["attns"].append(attn_block(ch))
                skip_channels.append(ch)
            if level != self.num_levels - 1:
                stage["downsample"] = res_block(ch, down=True)
                if progressive_input == "input_skip":
                    stage["combine"] = _conv(pyramid_ch, ch, 1)
                    if combine == "cat":
                        ch *= 2
                skip_channels.append(ch)
            self.down.append(stage)

        self.mid_block_0 = res_block(ch)
        self.mid_fusion = BottleneckFusion(ch, emb_dim, film_layout) if bottleneck_fusion else None
        if self.mid_fusion is not None:
            self.mid_fusion.contiguous_output = interval_conditional  # the MeanFlow JVP runs through it
        self.mid_attn = attn_block(ch) if bottleneck_attention else None
        self.mid_block_1 = res_block(ch)

        # up path: per level, blocks over [h; skip], attention, output-skip head, up-block
        self.up = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[level]
                stage["blocks"].append(res_block(ch + skip_channels.pop(), out_ch))
                ch = out_ch
            if level in attn_levels:
                stage["attn"] = attn_block(ch)
            if progressive == "output_skip":
                stage["pyramid_norm"] = _group_norm(ch)
                stage["pyramid_conv"] = _conv(ch, pyramid_ch, 3, init_scale=init_scale)
            if level != 0:
                stage["upsample"] = res_block(ch, up=True)
            self.up.append(stage)
        assert not skip_channels

        if progressive != "output_skip":
            self.norm_out = _group_norm(ch)
            self.conv_out = _conv(ch, pyramid_ch, 3, init_scale=init_scale)
        self.output_layer = nn.Conv2d(pyramid_ch, out_channels, 1)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """F and N must be multiples of this (2 ** number of downsamplings)."""
        return 2 ** (self.num_levels - 1)

    def _run(self, block: nn.Module, *args):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check_inputs(self, x, emb, t, dt=None):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"NCSNpp expects x of shape (B, {self.in_channels}, F, N), got {tuple(x.shape)}")
        if torch.is_complex(x):
            raise ValueError("NCSNpp expects real channels (Re/Im stacked), got a complex tensor")
        f, n = x.shape[-2:]
        m = self.size_multiple
        if f % m or n % m:
            raise ValueError(
                f"NCSNpp with {self.num_levels} levels needs F and N to be multiples of {m}, got F={f}, N={n}: "
                f"pad the spectrogram (frames to a multiple of {m})"
            )
        if self.emb_dim:
            if emb is None:
                raise ValueError(f"this NCSNpp is speaker-conditioned (emb_dim={self.emb_dim}): pass emb (B, {self.emb_dim})")
            if emb.dim() != 2 or emb.shape != (x.shape[0], self.emb_dim):
                raise ValueError(f"emb must have shape ({x.shape[0]}, {self.emb_dim}), got {tuple(emb.shape)}")
        elif emb is not None:
            raise ValueError("this NCSNpp has no speaker conditioning (emb_dim=0) but an embedding was passed")
        if self.time_conditional:
            if t is None:
                raise ValueError("this NCSNpp is time-conditional: pass t (B,)")
            if t.dim() != 1 or t.shape[0] != x.shape[0]:
                raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if self.interval_conditional:
            if dt is None or dt.shape != (x.shape[0],):
                raise ValueError(f"this NCSNpp embeds the interval r - t: pass dt of shape ({x.shape[0]},)")
        elif dt is not None:
            raise ValueError("this NCSNpp has no interval embedding (interval_conditional=false) but dt was passed")

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, t: torch.Tensor | None = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Cin, F, N) real, emb (B, D) | None, t (B,) | None, dt (B,) | None (the interval r - t
        of an ``interval_conditional`` network) -> (B, Cout, F, N)."""
        self._check_inputs(x, emb, t, dt)
        temb = None
        if self.time_conditional:
            te = self.time_embed
            s = t.to(x.dtype)
            temb = te["dense_1"](F.silu(te["dense_0"](te["fourier"](torch.log(s) if self.time_embedding == "log" else s))))
            if self.interval_conditional:
                ie = self.interval_embed
                temb = temb + ie["dense_1"](F.silu(ie["dense_0"](ie["fourier"](dt.to(x.dtype)))))
        if emb is not None:
            emb = emb.to(x.dtype)

        input_pyramid = x if self.progressive_input == "input_skip" else None
        hs = [self.conv_in(x)]
        for stage in self.down:
            attns = stage["attns"]
            for i, block in enumerate(stage["blocks"]):
                h = self._run(block, hs[-1], temb, emb)
                if len(attns):
                    h = self._run(attns[i], h)
                hs.append(h)
            if "downsample" in stage:
                h = self._run(stage["downsample"], hs[-1], temb, emb)
                if input_pyramid is not None:
                    input_pyramid = self.pyramid_downsample(input_pyramid)
                    skip = stage["combine"](input_pyramid)
                    h = skip + h if self.combine == "sum" else torch.cat([skip, h], dim=1)
                hs.append(h)

        h = self._run(self.mid_block_0, hs[-1], temb, emb)
        if self.mid_fusion is not None:
            h = self.mid_fusion(h, emb)
        if self.mid_attn is not None:
            h = self._run(self.mid_attn, h)
        h = self._run(self.mid_block_1, h, temb, emb)

        pyramid = None
        for stage in self.up:
            for block in stage["blocks"]:
                h = self._run(block, torch.cat([h, hs.pop()], dim=1), temb, emb)
            if "attn" in stage:
                h = self._run(stage["attn"], h)
            if self.progressive == "output_skip":
                head = stage["pyramid_conv"](F.silu(stage["pyramid_norm"](h)))
                pyramid = head if pyramid is None else self.pyramid_upsample(pyramid) + head
            if "upsample" in stage:
                h = self._run(stage["upsample"], h, temb, emb)
        assert not hs

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.conv_out(F.silu(self.norm_out(h)))
        if self.scale_by_t:  # sgmse's scale_by_sigma: divide by t before the output 1x1 conv
            h = h / t.to(h.dtype).reshape(-1, 1, 1, 1)
        return self.output_layer(h)


# ------------------------------------------------------------------------------------------
# named configurations
# ------------------------------------------------------------------------------------------
NCSNPP_PRESETS: dict[str, dict] = {
    # DDTSE as in the paper's code (spec section 6), with FiLM and bottleneck fusion done right
    "ncsnpp_paper": dict(
        name="ncsnpp", in_channels=2, out_channels=2, nf=128, ch_mult=[1, 1, 2, 2, 2, 2, 2],
        num_res_blocks=2, attn_resolutions=[16], bottleneck_attention=True, time_conditional=False,
        emb_dim=256, bottleneck_fusion=True,
    ),
    # the "M" size of SGMSE+ (icassp_2023 branch) in the DDTSE setting
    "ncsnpp_m": dict(
        name="ncsnpp", in_channels=2, out_channels=2, nf=128, ch_mult=[1, 2, 2, 2],
        num_res_blocks=1, attn_resolutions=[], bottleneck_attention=True, time_conditional=False,
        emb_dim=256, bottleneck_fusion=True,
    ),
    # CPU demo size: 16 channels at full and half resolution, wide only where the maps are small
    "ncsnpp_small": dict(
        name="ncsnpp", in_channels=2, out_channels=2, nf=16, ch_mult=[1, 1, 2, 4, 8],
        num_res_blocks=1, attn_resolutions=[16], bottleneck_attention=True, time_conditional=False,
        emb_dim=256, bottleneck_fusion=True,
    ),
    # unit tests
    "ncsnpp_tiny": dict(
        name="ncsnpp", in_channels=2, out_channels=2, nf=16, ch_mult=[1, 2, 2],
        num_res_blocks=1, attn_resolutions=[], bottleneck_attention=True, time_conditional=False,
        emb_dim=32, bottleneck_fusion=True,
    ),
    # SGMSE+ baseline score network ([x_t, y] in, time-conditioned, no speaker clue)
    "ncsnpp_sgmse": dict(
        name="ncsnpp", in_channels=4, out_channels=2, nf=128, ch_mult=[1, 1, 2, 2, 2, 2, 2],
        num_res_blocks=2, attn_resolutions=[16], bottleneck_attention=True, time_conditional=True,
        emb_dim=0, bottleneck_fusion=False,
    ),
    # conditional SGMSE+ baseline of the DDTSE code (ConditionalScoreModel)
    "ncsnpp_sgmse_conditional": dict(
        name="ncsnpp", in_channels=4, out_channels=2, nf=128, ch_mult=[1, 1, 2, 2, 2, 2, 2],
        num_res_blocks=2, attn_resolutions=[16], bottleneck_attention=True, time_conditional=True,
        emb_dim=256, bottleneck_fusion=True,
    ),
}


def ncsnpp_preset(name: str, **overrides) -> dict:
    """A named NCSNpp config dict for ``MODELS.build`` (a fresh copy, ``overrides`` applied)."""
    if name not in NCSNPP_PRESETS:
        raise DdtseError(f"unknown NCSN++ preset '{name}' (known: {', '.join(sorted(NCSNPP_PRESETS))})")
    cfg = {k: (list(v) if isinstance(v, list) else v) for k, v in NCSNPP_PRESETS[name].items()}
    cfg.update(overrides)
    return cfg


# ------------------------------------------------------------------------------------------
# DDTSE network: backbone + speaker clue in one module
# ------------------------------------------------------------------------------------------
@MODELS.register("ddtse_net")
class ConditionalNCSNpp(nn.Module):
    """The whole trainable DDTSE network: a speaker clue (encoder or pre-computed embedding)
    and an NCSN++ backbone conditioned on it, so that one module (and one EMA) holds both.

    - ``backbone``: an NCSNpp config dict (``name`` optional) or a preset name; its ``emb_dim``
      is set from the speaker module's ``output_dim`` (a different explicit value is an error).
    - ``speaker``: ``{name: spectral_speaker_encoder, ...}``, ``{name: precomputed, dim: 256}``
      or None (unconditional backbone).

    ``forward(x (B, Cin, F, N), enrollment (B, Te) | None, enrollment_lengths (B,) | None,
    embedding (B, D) | None, t (B,) | None) -> (B, Cout, F, N)``. Samplers call
    ``speaker_embedding(...)`` once and then ``backbone(x, emb, t)`` repeatedly.
    """

    def __init__(self, backbone: dict | str = "ncsnpp_paper", speaker: dict | None = None):
        super().__init__()
        if speaker is not None:
            if not isinstance(speaker, dict) or "name" not in speaker:
                raise DdtseError(f"ddtse_net: 'speaker' must be a config dict with a 'name', got {speaker!r}")
            self.speaker = MODELS.build(speaker)
            emb_dim = int(self.speaker.output_dim)
        else:
            self.speaker = None
            emb_dim = 0
        cfg = ncsnpp_preset(backbone) if isinstance(backbone, str) else dict(backbone)
        if isinstance(backbone, str):  # a preset is a shape: its conditioning width follows the clue
            cfg.pop("emb_dim", None)
        name = cfg.pop("name", "ncsnpp")
        if name != "ncsnpp":
            raise DdtseError(f"ddtse_net: the backbone must be an 'ncsnpp' config, got '{name}'")
        if cfg.get("emb_dim", emb_dim) != emb_dim:
            raise DdtseError(
                f"ddtse_net: backbone emb_dim={cfg['emb_dim']} does not match the speaker clue's "
                f"output dim {emb_dim}; drop backbone.emb_dim or change the speaker's emb_dim"
            )
        cfg["emb_dim"] = emb_dim
        if emb_dim == 0:
            cfg["bottleneck_fusion"] = False
        self.backbone = MODELS.build({"name": "ncsnpp", **cfg})

    @property
    def emb_dim(self) -> int:
        return self.backbone.emb_dim

    def speaker_embedding(
        self,
        enrollment: torch.Tensor | None = None,
        enrollment_lengths: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The speaker clue (B, emb_dim) from enrollment (B, Te) + lengths (B,) or a pre-computed
        embedding (B, D); None for an unconditional backbone."""
        if self.speaker is None:
            return None
        if getattr(self.speaker, "uses_enrollment", True):
            if enrollment is None:
                raise ValueError("this DDTSE network encodes the enrollment: pass enrollment (B, Te)")
            return self.speaker(enrollment, enrollment_lengths)
        if embedding is None:
            raise ValueError("this DDTSE network reads pre-computed speaker embeddings: pass embedding (B, D)")
        return self.speaker(embedding)

    def forward(
        self,
        x: torch.Tensor,
        enrollment: torch.Tensor | None = None,
        enrollment_lengths: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Cin, F, N) -> (B, Cout, F, N), conditioned on the speaker clue (and t if the
        backbone is time-conditional)."""
        emb = self.speaker_embedding(enrollment, enrollment_lengths, embedding)
        return self.backbone(x, emb, t)
