"""Model "v3": a pair transformer over the rows and the columns of an image.

It mirrors the shape of a protein-pair interaction model on a small scale. The 8 rows and
the 8 columns of a digit image are two token sets, like the residues of two proteins. Each
set passes through its own self-attention encoder, then cross-attention layers let each set
attend to the other, and the pooled sets feed an MLP head that returns one logit.
"""

from __future__ import annotations

import torch
from torch import nn

from src.config import ModelConfig

IMAGE_SIZE = 8


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention from ``queries`` to ``context``, followed by a feed-forward layer."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(d_model)
        self.context_norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=attention_dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = self.context_norm(context)
        attended, _ = self.attention(self.query_norm(queries), context, context, need_weights=False)
        queries = queries + self.dropout(attended)
        return queries + self.dropout(self.ffn(self.ffn_norm(queries)))


class RowColumnPairModel(nn.Module):
    """Map images of shape (batch, 8, 8) to logits of shape (batch,)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d_model = config.d_model
        ffn_dim = d_model * config.ffn_multiplier

        self.row_projection = nn.Linear(IMAGE_SIZE, d_model)
        self.column_projection = nn.Linear(IMAGE_SIZE, d_model)
        self.row_positions = nn.Parameter(torch.zeros(IMAGE_SIZE, d_model))
        self.column_positions = nn.Parameter(torch.zeros(IMAGE_SIZE, d_model))
        nn.init.normal_(self.row_positions, std=0.02)
        nn.init.normal_(self.column_positions, std=0.02)

        self.row_encoder = self._build_encoder(config, ffn_dim)
        self.column_encoder = self._build_encoder(config, ffn_dim)
        self.rows_to_columns = nn.ModuleList(
            CrossAttentionBlock(d_model, config.n_heads, ffn_dim, config.dropout, config.cross_attention_dropout)
            for _ in range(config.cross_attn_layers)
        )
        self.columns_to_rows = nn.ModuleList(
            CrossAttentionBlock(d_model, config.n_heads, ffn_dim, config.dropout, config.cross_attention_dropout)
            for _ in range(config.cross_attn_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)

        # Pooling concatenates the mean and the max of each token set.
        head_layers: list[nn.Module] = []
        width = 4 * d_model
        for hidden_dim in config.head_hidden_dims:
            head_layers += [nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(config.head_dropout)]
            width = hidden_dim
        head_layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*head_layers)

    @staticmethod
    def _build_encoder(config: ModelConfig, ffn_dim: int) -> nn.TransformerEncoder:
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.n_heads,
            dim_feedforward=ffn_dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        return nn.TransformerEncoder(layer, config.encoder_layers, enable_nested_tensor=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = self.row_encoder(self.row_projection(images) + self.row_positions)
        columns = self.column_encoder(self.column_projection(images.transpose(1, 2)) + self.column_positions)

        # Both directions read the states from before the layer, so neither set goes first.
        for row_block, column_block in zip(self.rows_to_columns, self.columns_to_rows):
            rows, columns = row_block(rows, columns), column_block(columns, rows)

        rows, columns = self.final_norm(rows), self.final_norm(columns)
        pooled = torch.cat([rows.mean(dim=1), rows.amax(dim=1), columns.mean(dim=1), columns.amax(dim=1)], dim=1)
        return self.head(pooled).squeeze(1)


def build_model(config: ModelConfig) -> nn.Module:
    """Return a fresh model for ``config.model``; config validation already checked the name."""
    if config.model == "v3":
        return RowColumnPairModel(config)
    raise ValueError(f"model_config.model {config.model!r} has no implementation; use 'v3'")
