"""Fusion head: StyleGRU, style attention, transformer with a class token, two FC layers.

The report's classifier (its Figure 1): per-frame pSp style vectors run through a GRU (StyleGRU,
Choi et al. 2024, CVPR); the content vectors of the video's clips are the attention *queries*, the
StyleGRU outputs the *keys* and *values* (three linear projections, scaled dot product, softmax);
the attended vectors and a learned class token go through a transformer encoder; the class token
goes through two fully connected layers to one logit (sigmoid = p_fake).

The head never sees pixels: it reads the features that ``stylefusion.features`` extracts (or the
feature cache stores). Attention is computed within each video with batched matrix products over
the per-video axis, so a video's score does not depend on the other videos in its batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from stylefusion.config import StyleFusionConfig


class FusionOutput(NamedTuple):
    logits: torch.Tensor  # [B] pre-sigmoid score
    attention: torch.Tensor  # [B, T] style-attention weight per frame (mean over clips), sums to 1
    # [B, attn_dim] the fused video representation the classifier reads (class token after the
    # final norm): what the out-of-domain check (stylefusion.decision.EmbeddingDensity) measures.
    embedding: torch.Tensor


class StyleGRU(nn.Module):
    """GRU over the per-frame style vectors (optionally their frame-to-frame differences)."""

    def __init__(self, in_dim: int, hidden: int, layers: int, bidirectional: bool, diff: bool):
        super().__init__()
        self.diff = diff
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True,
                          bidirectional=bidirectional)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        # style: [B, T, D]
        if self.diff:
            # Style flow (Choi et al. 2024): differences between consecutive frames; the first frame
            # gets a zero difference so the output stays aligned with the T source frames.
            style = torch.cat([torch.zeros_like(style[:, :1]), style[:, 1:] - style[:, :-1]], dim=1)
        out, _ = self.gru(style)  # [B, T, out_dim]
        return out


class StyleAttention(nn.Module):
    """Content queries attend over StyleGRU keys/values, within each video."""

    def __init__(self, content_dim: int, style_dim: int, dim: int):
        super().__init__()
        self.q = nn.Linear(content_dim, dim)
        self.k = nn.Linear(style_dim, dim)
        self.v = nn.Linear(style_dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q(content)  # [B, C, dim]
        k = self.k(style)  # [B, T, dim]
        v = self.v(style)  # [B, T, dim]
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1)  # [B, C, T]
        return torch.bmm(weights, v), weights  # [B, C, dim], [B, C, T]


class FusionHead(nn.Module):
    """Everything after feature extraction; input features, output one logit per video."""

    def __init__(self, config: StyleFusionConfig):
        super().__init__()
        c = config
        style_in = len(c.style_levels) * c.style_dim
        self.style_gru = StyleGRU(style_in, c.gru_hidden, c.gru_layers, c.gru_bidirectional, c.style_diff)
        self.attention = StyleAttention(c.content_dim, self.style_gru.out_dim, c.attn_dim)
        # The attended style is added to the projected content query (a residual), so the content
        # evidence reaches the classifier even where attention is flat.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.attn_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.num_clips, c.attn_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(c.attn_dim, c.transformer_heads, c.transformer_ff,
                                           dropout=c.dropout, batch_first=True, norm_first=True)
        self.transformer = (nn.TransformerEncoder(layer, c.transformer_layers, enable_nested_tensor=False)
                            if c.transformer_layers else nn.Identity())
        self.norm = nn.LayerNorm(c.attn_dim)
        self.fc1 = nn.Linear(c.attn_dim, c.fc_hidden)
        self.fc2 = nn.Linear(c.fc_hidden, 1)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> FusionOutput:
        """content: [B, C, content_dim]; style: [B, T, n_levels, style_dim]."""
        b = content.shape[0]
        seq = self.style_gru(style.flatten(2))  # [B, T, gru_out]
        attended, weights = self.attention(content, seq)  # [B, C, dim], [B, C, T]
        tokens = attended + self.attention.q(content)  # residual on the query
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.pos_embed
        cls = self.norm(self.transformer(tokens)[:, 0])  # [B, dim]
        logits = self.fc2(self.drop(torch.relu(self.fc1(cls)))).squeeze(-1)  # [B]
        return FusionOutput(logits, weights.mean(dim=1), cls)
