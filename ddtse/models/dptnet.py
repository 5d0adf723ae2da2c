"""DPTNet (Chen, Mao & Liu 2020), single output: the per-speaker focused extractor.

No speaker conditioning: one model is trained per target speaker and maps the mixture to that
speaker's voice (FocusedSpeakerExtractor workflow, docs: shared spec frontends.md sections 3-4).

    mixture (B, 1, T) -> Conv1d(1->E, window W, stride W/2) + ReLU           encoder, (B, E, L)
      -> GroupNorm(1, E) -> 1x1 conv to N                                      (B, N, L)
      -> chunks of K frames, 50 % overlap                                      (B, N, K, S)
      -> D x [intra-chunk improved transformer, inter-chunk improved transformer]
      -> PReLU -> Conv2d 1x1 (N->N) -> overlap-add                             (B, N, L)
      -> tanh(1x1) * sigmoid(1x1) gate -> 1x1 to E -> ReLU mask                (B, E, L)
      -> mask * encoded -> ConvTranspose1d(E->1, W, stride W/2)                (B, T)

"Improved transformer": multi-head attention (``heads``) + residual + LayerNorm, then
BiLSTM(H) -> ReLU -> Linear(2H -> N) in place of the feed-forward net + residual + LayerNorm;
no positional encoding (the LSTM carries order). The input is padded to a whole number of
encoder hops and the output cropped, so ``forward`` returns exactly T samples for any T.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ddtse.errors import DdtseError
from ddtse.registry import MODELS


class ImprovedTransformerLayer(nn.Module):
    """MHA + residual + LayerNorm, then BiLSTM -> ReLU -> Linear + residual + LayerNorm; (B, L, N) -> (B, L, N)."""

    def __init__(self, n: int, heads: int, lstm_hidden: int, dropout: float = 0.0, bidirectional: bool = True):
        super().__init__()
        self.mha = nn.MultiheadAttention(n, heads, dropout=dropout, batch_first=True)
        self.norm_mha = nn.LayerNorm(n)
        self.lstm = nn.LSTM(n, lstm_hidden, batch_first=True, bidirectional=bidirectional)
        self.linear = nn.Linear(lstm_hidden * (2 if bidirectional else 1), n)
        self.norm_ff = nn.LayerNorm(n)
        self.dropout = nn.Dropout(dropout)

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``self.mha(x, x, x)`` computed from its own weights with scaled_dot_product_attention:
        the same result, and it traces with dynamic shapes (ONNX export)."""
        mha, (b, length, n) = self.mha, x.shape
        heads = mha.num_heads
        q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, length, heads, n // heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if self.training else 0.0)
        return mha.out_proj(att.transpose(1, 2).reshape(b, length, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_mha(x + self.dropout(self.self_attention(x)))
        ff, _ = self.lstm(x)
        ff = self.linear(self.dropout(F.relu(ff)))
        return self.norm_ff(x + self.dropout(ff))


class DualPathBlock(nn.Module):
    """Intra-chunk then inter-chunk improved transformer on (B, N, K, S)."""

    def __init__(self, n: int, heads: int, lstm_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.intra = ImprovedTransformerLayer(n, heads, lstm_hidden, dropout)
        self.inter = ImprovedTransformerLayer(n, heads, lstm_hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, k, s = x.shape
        # intra-chunk: sequences of K frames, one per (batch, chunk)
        y = x.permute(0, 3, 2, 1).reshape(b * s, k, n)
        y = self.intra(y).reshape(b, s, k, n)
        # inter-chunk: sequences of S chunks, one per (batch, position in chunk)
        y = y.permute(0, 2, 1, 3).reshape(b * k, s, n)
        y = self.inter(y).reshape(b, k, s, n)
        return y.permute(0, 3, 1, 2).contiguous()


@MODELS.register("dptnet")
class DPTNet(nn.Module):
    """Dual-path transformer extractor: ``forward(mixture (B, 1, T) or (B, T)) -> estimate (B, T)``.

    Options: ``n`` (bottleneck channels N), ``e`` (encoder filters E), ``k`` (chunk length in
    frames), ``d`` (dual-path blocks), ``heads``, ``lstm_hidden`` (H), ``window`` (encoder
    window in samples; stride = window // 2), ``dropout``, ``in_channels`` (1),
    ``gradient_checkpointing`` (gradient checkpointing of the dual-path blocks while training).
    """

    # the extractor-model contract (ddtse/systems/discriminative.py MODEL_CONTRACT)
    needs_enrollment = False
    accepts_lengths = False
    returns_aux = False

    def __init__(
        self,
        n: int = 64,
        e: int = 256,
        k: int = 250,
        d: int = 6,
        heads: int = 4,
        lstm_hidden: int = 128,
        window: int = 16,
        dropout: float = 0.0,
        in_channels: int = 1,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if window < 2:
            raise DdtseError(f"dptnet: window must be >= 2 samples, got {window}")
        if n % heads:
            raise DdtseError(f"dptnet: n ({n}) must be divisible by heads ({heads})")
        if k < 2:
            raise DdtseError(f"dptnet: chunk length k must be >= 2 frames, got {k}")
        self.n, self.e, self.k, self.d = n, e, k, d
        self.window, self.stride = int(window), int(window) // 2
        self.in_channels = in_channels
        self.gradient_checkpointing = bool(gradient_checkpointing)

        self.encoder = nn.Conv1d(in_channels, e, self.window, stride=self.stride, bias=False)
        self.norm = nn.GroupNorm(1, e, eps=1e-8)
        self.bottleneck = nn.Conv1d(e, n, 1)
        self.blocks = nn.ModuleList(DualPathBlock(n, heads, lstm_hidden, dropout) for _ in range(d))
        self.prelu = nn.PReLU()
        self.head = nn.Conv2d(n, n, 1)
        self.gate_tanh = nn.Conv1d(n, n, 1)
        self.gate_sigmoid = nn.Conv1d(n, n, 1)
        self.mask = nn.Conv1d(n, e, 1, bias=False)
        self.decoder = nn.ConvTranspose1d(e, 1, self.window, stride=self.stride, bias=False)

    # --- chunking (asteroid-style unfold/fold with K frames of padding on each side) ---
    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, length = x.shape
        hop = self.k // 2
        chunks = F.unfold(x.unsqueeze(-1), kernel_size=(self.k, 1), padding=(self.k, 0), stride=(hop, 1))
        return chunks.reshape(b, n, self.k, -1)

    def _merge(self, x: torch.Tensor, length) -> torch.Tensor:
        """Overlap-add of chunks (B, N, K, S) back to (B, N, length), the sum ``F.fold`` computes,
        written with pads and reshapes so that it exports with a dynamic length (ONNX col2im cannot)."""
        b, n, k, s = x.shape
        hop = self.k // 2
        pieces = -(-k // hop)
        total = None
        for p in range(pieces):  # rows p*hop.. of every chunk j land in output block j + p
            piece = x[:, :, p * hop : (p + 1) * hop, :]
            piece = F.pad(piece, (p, pieces - 1 - p, 0, hop - piece.shape[2]))
            total = piece if total is None else total + piece
        out = total.permute(0, 1, 3, 2).reshape(b, n, -1)  # block-major: sample m * hop + i
        return out[:, :, k : k + length]

    @property
    def in_audio_channels(self) -> int:
        return int(self.in_channels)

    @property
    def min_input_samples(self) -> int:
        """Shortest input: one encoder window."""
        return self.window

    def padded_length(self, t):
        """Smallest length >= t (and >= window) that is a whole number of encoder hops (an int, or
        an int tensor while the model is traced for export)."""
        if torch.is_tensor(t):
            t = t.clamp_min(self.window)
            return t + torch.remainder(self.stride - torch.remainder(t - self.window, self.stride), self.stride)
        t = max(t, self.window)
        rest = (t - self.window) % self.stride
        return t if rest == 0 else t + self.stride - rest

    def forward(self, mixture: torch.Tensor, *unused) -> torch.Tensor:
        if mixture.dim() == 2:
            mixture = mixture.unsqueeze(1)
        if mixture.dim() != 3 or mixture.shape[1] != self.in_channels:
            raise DdtseError(
                f"dptnet expects a mixture of shape (B, {self.in_channels}, T) or (B, T), got {tuple(mixture.shape)}"
            )
        t = mixture.shape[-1]
        x = F.pad(mixture, (0, self.padded_length(t) - t))
        w = F.relu(self.encoder(x))  # (B, E, L)
        frames = w.shape[-1]
        y = self.bottleneck(self.norm(w))
        y = self._split(y)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                y = checkpoint(block, y, use_reentrant=False)
            else:
                y = block(y)
        y = self.head(self.prelu(y))
        y = self._merge(y, frames)
        y = torch.tanh(self.gate_tanh(y)) * torch.sigmoid(self.gate_sigmoid(y))
        m = F.relu(self.mask(y))
        out = self.decoder(w * m)[:, 0]
        return out[..., :t]
