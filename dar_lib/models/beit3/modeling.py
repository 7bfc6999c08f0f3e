"""The BEiT-3 retrieval model, ported from torchscale 0.2.0 with its module names (so unilm's checkpoints
load by name, tensor for tensor), and its sizes (:class:`Beit3Config`, read off a checkpoint). See the
package docstring for what is ported and why."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: Attention head size of the released BEiT-3 models (base: 768 wide, 12 heads; large: 1024, 16).
#: Shapes do not record the head count, so a checkpoint ``embed_dim`` wide gets
#: ``embed_dim // BEIT3_HEAD_SIZE`` heads.
BEIT3_HEAD_SIZE = 64
#: unilm's normalisation for BEiT-3 (timm's IMAGENET_INCEPTION_MEAN / _STD).
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
#: fairseq reserves position rows 0 and 1; token i uses row i + 2 (torchscale ``PositionalEmbedding``).
POSITION_OFFSET = 2
#: How to get the real files (named in errors).
WHERE_TO_GET = ("the checkpoint (e.g. beit3_base_patch16_384_coco_retrieval.pth) and the sentencepiece model "
                "beit3.spm are linked from github.com/microsoft/unilm/tree/master/beit3 (README.md and "
                "get_started/get_started_for_retrieval.md); download both and pass their local paths")

VISION, TEXT = "vision", "text"



class Beit3ImportError(ValueError):
    """A BEiT-3 checkpoint or sentencepiece model that does not fit the retrieval model."""


@dataclass(frozen=True)
class Beit3Config:
    """Sizes of a BEiT-3 retrieval model (defaults: BEiT-3 base at 384 px, unilm's retrieval config).

    Attributes:
        embed_dim: model width. layers: transformer layers. heads: attention heads.
        ffn_dim: FFN hidden width. img_size: image side in pixels. patch_size: patch side.
        in_chans: image channels. vocab_size: text embedding rows (64010 for ``beit3.spm``).
        max_source_positions: text position rows (texts up to this minus 2 tokens).
        layernorm_eps: LayerNorm epsilon (torchscale default 1e-5).
        subln: sub-LayerNorms inside attention and FFN (torchscale default, used by BEiT-3).
        normalize_output: final multiway LayerNorm.
    """

    embed_dim: int = 768
    layers: int = 12
    heads: int = 12
    ffn_dim: int = 3072
    img_size: int = 384
    patch_size: int = 16
    in_chans: int = 3
    vocab_size: int = 64010
    max_source_positions: int = 1024
    layernorm_eps: float = 1e-5
    subln: bool = True
    normalize_output: bool = True

    @property
    def num_patches(self) -> int:
        """Patches per image, ``(img_size // patch_size) ** 2`` (576 for 384 px, 16 px patches)."""
        return (self.img_size // self.patch_size) ** 2

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], *, head_size: int = BEIT3_HEAD_SIZE,
                        source: str = "checkpoint") -> "Beit3Config":
        """Read the sizes off an original-layout state dict (heads: ``embed_dim // head_size``).

        Raises:
            Beit3ImportError: a key the sizes are read from is missing, the vision position table
                is not a square grid, or ``embed_dim`` is not a multiple of ``head_size``.
        """
        need = ("beit3.text_embed.weight", "beit3.vision_embed.proj.weight", "beit3.encoder.embed_positions.A.weight",
                "beit3.encoder.embed_positions.B.weight", "beit3.encoder.layers.0.ffn.A.fc1.weight")
        missing = [k for k in need if k not in state]
        if missing:
            raise Beit3ImportError(f"{source}: not a BEiT-3 checkpoint in unilm's layout (missing "
                                   f"{', '.join(missing)}); {WHERE_TO_GET}")
        vocab, dim = state["beit3.text_embed.weight"].shape
        proj = state["beit3.vision_embed.proj.weight"]
        patch, chans = int(proj.shape[-1]), int(proj.shape[1])
        n_vis = int(state["beit3.encoder.embed_positions.A.weight"].shape[0]) - 1 - POSITION_OFFSET  # minus CLS
        side = math.isqrt(max(n_vis, 0))
        if side * side != n_vis:
            raise Beit3ImportError(f"{source}: beit3.encoder.embed_positions.A.weight has {n_vis + 3} rows, "
                                   f"not 3 + a square number of patches")
        if dim % head_size:
            raise Beit3ImportError(f"{source}: embed_dim {dim} is not a multiple of the head size {head_size}")
        layers = {int(m.group(1)) for k in state if (m := re.match(r"beit3\.encoder\.layers\.(\d+)\.", k))}
        return cls(embed_dim=int(dim), layers=max(layers) + 1, heads=int(dim) // head_size,
                   ffn_dim=int(state["beit3.encoder.layers.0.ffn.A.fc1.weight"].shape[0]), img_size=side * patch,
                   patch_size=patch, in_chans=chans, vocab_size=int(vocab),
                   max_source_positions=int(state["beit3.encoder.embed_positions.B.weight"].shape[0]),
                   subln="beit3.encoder.layers.0.self_attn.inner_attn_ln.A.weight" in state,
                   normalize_output="beit3.encoder.layer_norm.A.weight" in state)


# -- the model (names follow torchscale so that state dict keys match unilm's checkpoints) ------------
class Multiway(nn.Module):
    """Two copies of a module: ``A`` for vision tokens, ``B`` for language tokens (torchscale's MultiwayNetwork)."""

    def __init__(self, a: nn.Module, b: nn.Module):
        super().__init__()
        self.A, self.B = a, b

    def forward(self, x: torch.Tensor, way: str) -> torch.Tensor:
        """Apply ``A`` to the whole input when ``way`` is ``"vision"``, else ``B`` (single-modality passes only).

        Args:
            x: the wrapped module's input, e.g. (B, L, D) hidden states, or (1, L) position indices
                for the position tables.
            way: ``VISION`` (``"vision"``) or ``TEXT``; any other value also selects ``B``.

        Returns:
            The chosen copy's output, e.g. (B, L, D') for a Linear or LayerNorm, (1, L, D) for an Embedding.
        """
        return self.A(x) if way == VISION else self.B(x)


class VisionEmbedding(nn.Module):
    """Patchify with a strided conv and prepend the class token (``mask_token`` is for pre-training only)."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.img_size = cfg.img_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token first; positions are added later, by :class:`Encoder`.

        Args:
            pixels: normalised images (B, in_chans, img_size, img_size).

        Returns:
            (B, 1 + num_patches, embed_dim); row 0 is ``cls_token``, then the patches row-major.

        Raises:
            ValueError: the images are not ``img_size`` x ``img_size`` pixels.
        """
        if pixels.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"BEiT-3 expects {self.img_size}x{self.img_size} images, got {tuple(pixels.shape[-2:])}")
        x = self.proj(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)


class MultiheadAttention(nn.Module):
    """Self-attention with multiway projections and sub-LayerNorm (torchscale, non-flash path)."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.heads
        self.head_dim = d // cfg.heads
        self.scaling = self.head_dim ** -0.5

        def lin():
            return Multiway(nn.Linear(d, d), nn.Linear(d, d))

        self.k_proj, self.v_proj, self.q_proj, self.out_proj = lin(), lin(), lin(), lin()
        self.inner_attn_ln = (Multiway(nn.LayerNorm(d, eps=cfg.layernorm_eps), nn.LayerNorm(d, eps=cfg.layernorm_eps))
                              if cfg.subln else None)

    def forward(self, x: torch.Tensor, way: str, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Multi-head self-attention over the L tokens, projections chosen by ``way``.

        Args:
            x: hidden states (B, L, D), D = embed_dim = heads * head_dim.
            way: ``"vision"`` (copies ``A``) or ``"text"`` (copies ``B``).
            key_padding_mask: (B, L), true/nonzero at padded tokens, which no token attends to;
                ``None`` attends to all.

        Returns:
            (B, L, D), same dtype as ``x`` (the softmax runs in float32).
        """
        b, t, d = x.shape
        h, hd = self.num_heads, self.head_dim
        # Same order of operations as torchscale: scale q, then q @ k^T, softmax in float32.
        q = self.q_proj(x, way) * self.scaling
        k, v = self.k_proj(x, way), self.v_proj(x, way)
        q, k, v = (z.view(b, t, h, hd).transpose(1, 2).reshape(b * h, t, hd) for z in (q, k, v))
        w = torch.bmm(q, k.transpose(1, 2))
        if key_padding_mask is not None:
            w = w.view(b, h, t, t).masked_fill(key_padding_mask[:, None, None, :].to(torch.bool), float("-inf"))
            w = w.view(b * h, t, t)
        w = F.softmax(w, dim=-1, dtype=torch.float32).type_as(w)
        attn = torch.bmm(w, v).view(b, h, t, hd).transpose(1, 2).reshape(b, t, d)
        if self.inner_attn_ln is not None:
            attn = self.inner_attn_ln(attn, way)
        return self.out_proj(attn, way)


class FeedForwardNetwork(nn.Module):
    """fc1 -> exact GELU (computed in float32) -> sub-LayerNorm -> fc2."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.embed_dim)
        self.ffn_layernorm = nn.LayerNorm(cfg.ffn_dim, eps=cfg.layernorm_eps) if cfg.subln else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., embed_dim) -> (..., embed_dim) through an ffn_dim-wide hidden layer; dtype of ``x`` kept."""
        x = self.fc1(x)
        x = F.gelu(x.float()).type_as(x)
        if self.ffn_layernorm is not None:
            x = self.ffn_layernorm(x)
        return self.fc2(x)


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + FFN(LN(x)), each LN and the FFN chosen by modality."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        d, eps = cfg.embed_dim, cfg.layernorm_eps
        self.self_attn = MultiheadAttention(cfg)
        self.self_attn_layer_norm = Multiway(nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps))
        self.ffn = Multiway(FeedForwardNetwork(cfg), FeedForwardNetwork(cfg))
        self.final_layer_norm = Multiway(nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps))

    def forward(self, x: torch.Tensor, way: str, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """One block: hidden states (B, L, D) -> (B, L, D).

        Args:
            x: hidden states (B, L, D).
            way: ``"vision"`` or ``"text"``: which copy of every LayerNorm, projection and FFN.
            key_padding_mask: (B, L), true/nonzero at padded tokens, or ``None``.
        """
        x = x + self.self_attn(self.self_attn_layer_norm(x, way), way, key_padding_mask)
        return x + self.ffn(self.final_layer_norm(x, way), way)


class Encoder(nn.Module):
    """Positions (vision table ``A``, text table ``B``), the layers and the final multiway LayerNorm."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        d = cfg.embed_dim
        self.embed_positions = Multiway(nn.Embedding(cfg.num_patches + 1 + POSITION_OFFSET, d),
                                        nn.Embedding(cfg.max_source_positions, d))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.layer_norm = (Multiway(nn.LayerNorm(d, eps=cfg.layernorm_eps), nn.LayerNorm(d, eps=cfg.layernorm_eps))
                           if cfg.normalize_output else None)

    def forward(self, tokens: torch.Tensor, way: str, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Add positions, zero padded tokens, run every layer and the final LayerNorm.

        Token ``i`` gets position row ``i + 2`` (:data:`POSITION_OFFSET`) of table ``A`` (vision)
        or ``B`` (text), so L is at most ``1 + num_patches`` for images and
        ``max_source_positions - 2`` for texts.

        Args:
            tokens: embedded tokens (B, L, D), not ids: :class:`VisionEmbedding` output (L = 1 +
                num_patches) or ``text_embed(input_ids)``.
            way: ``"vision"`` or ``"text"``.
            padding_mask: (B, L), true/nonzero at padding (texts only), or ``None``.

        Returns:
            Hidden states (B, L, D); row 0 is the class / ``<s>`` token the retrieval heads read.

        Raises:
            IndexError: L exceeds the position table (raised by ``nn.Embedding`` on the CPU).
        """
        positions = torch.arange(POSITION_OFFSET, tokens.shape[1] + POSITION_OFFSET, device=tokens.device)
        x = tokens + self.embed_positions(positions.unsqueeze(0), way)
        if padding_mask is not None:
            # torchscale zeroes padded tokens before the first layer (they are masked as keys too).
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        for layer in self.layers:
            x = layer(x, way, padding_mask)
        if self.layer_norm is not None:
            x = self.layer_norm(x, way)
        return x


class BEiT3(nn.Module):
    """The BEiT-3 backbone, single-modality passes only (what retrieval uses)."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.text_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.vision_embed = VisionEmbedding(cfg)
        self.encoder = Encoder(cfg)

    def forward_vision(self, pixels: torch.Tensor) -> torch.Tensor:
        """Hidden states (n, 1 + patches, embed_dim) of normalised pixels (n, C, H, W)."""
        return self.encoder(self.vision_embed(pixels), VISION)

    def forward_text(self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (n, L, embed_dim) of token ids (n, L); ``padding_mask`` is True/1 at padding."""
        return self.encoder(self.text_embed(input_ids), TEXT, padding_mask)


class Beit3ForRetrieval(nn.Module):
    """unilm's ``BEiT3ForRetrieval`` for inference: the backbone and the two embed_dim x embed_dim heads (768x768
    for base).

    Args:
        cfg: the model sizes.
    """

    def __init__(self, cfg: Beit3Config = Beit3Config()):
        super().__init__()
        self.config = cfg
        self.beit3 = BEiT3(cfg)
        self.language_head = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False)
        self.vision_head = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features (n, embed_dim): ``vision_head`` of the class token."""
        return self.vision_head(self.beit3.forward_vision(pixels)[:, 0, :])

    def text_features(self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised text features (n, embed_dim): ``language_head`` of the ``<s>`` token."""
        return self.language_head(self.beit3.forward_text(input_ids, padding_mask)[:, 0, :])
