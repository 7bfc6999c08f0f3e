"""BEiT-3 retrieval encoder: unilm's ``BEiT3ForRetrieval`` ported from torchscale, loading the original checkpoints.

Why a port and not ``torchscale``: the reference model (``torchscale.model.BEiT3`` plus unilm's
``beit3/modeling_finetune.py``) cannot be installed cleanly beside this project's pinned CPU torch.
torchscale imports its pinned dependencies at module level (``torchscale/component/droppath.py``:
``from timm.models.layers import drop_path``; ``torchscale/architecture/encoder.py``:
``from fairscale.nn import checkpoint_wrapper, wrap``), so ``pip install --no-deps torchscale``
fails at import unless fake ``timm``/``fairscale`` modules are planted in ``sys.modules`` for the
whole process; installed with its dependencies, ``timm==0.6.13`` pulls torchvision (which fails
to import beside our torch: ``operator torchvision::nms does not exist``) and pip even replaces
the pinned torch. The retrieval features need about two hundred lines of it, so they are ported
here, with the same module names as torchscale 0.2.0 (the version unilm's BEiT-3 pins) so that
unilm's checkpoints load by name, tensor for tensor. Not ported, because retrieval inference with
the released configs never uses them: the joint vision-language pass, MoE, xPos, relative position
bias, drop-path, DeepNorm, flash attention and incremental decoding.

The model (torchscale ``EncoderConfig`` as unilm's ``_get_base_config`` sets it): pre-LayerNorm
multiway transformer in which EVERY per-token module has a vision copy ``A`` and a language copy
``B`` (the q/k/v/out projections and the sub-LayerNorm of the attention as well as the FFN and
the LayerNorms; only the attention pattern itself is shared), sub-LayerNorms inside attention
(``inner_attn_ln``) and FFN (``ffn_layernorm``), exact GELU, LayerNorm eps 1e-5, learned absolute
positions starting at index 2 (fairseq), a final multiway LayerNorm. Retrieval features as unilm
computes them: image ``normalize(vision_head(x[:, 0]))`` of the vision-only pass, text
``normalize(language_head(x[:, 0]))`` of the text-only pass with a padding mask.

Preprocessing (unilm ``datasets.build_transform`` for evaluation): square bicubic resize to the
checkpoint's image size (384 for ``beit3_base_patch16_384_coco_retrieval.pth``), mean and std 0.5.
Text: unilm tokenises with ``XLMRobertaTokenizer(beit3.spm)``, ``<s>`` + at most ``max_len - 2``
pieces + ``</s>``, pad id 1, ``max_len`` 64 in the retrieval fine-tuning. transformers 5 no longer
builds that tokenizer from a ``.spm`` file (``XLMRobertaTokenizer("beit3.spm")`` raises a
TypeError; ``vocab_file=`` is ignored and every token becomes ``<unk>``), so
:class:`Beit3Tokenizer` reproduces its fairseq id mapping over ``sentencepiece`` directly.

Examples:
    With unilm's checkpoint and sentencepiece model on disk (``load_encoder("beit3:<ckpt>+<spm>")`` is the
    same), ``Beit3Encoder.from_checkpoint("beit3_base_patch16_384_coco_retrieval.pth", "beit3.spm")
    .encode_text(["a dog on a sofa"])`` has shape ``(1, 768)``; ``tests/test_beit3.py`` builds tiny ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ImagePreprocessor, _HFDualEncoder

log = logging.getLogger(__name__)

#: Attention head size of the released BEiT-3 models (base: 768 wide, 12 heads; large: 1024, 16).
#: Shapes do not record the head count, so a checkpoint ``embed_dim`` wide gets
#: ``embed_dim // BEIT3_HEAD_SIZE`` heads.
BEIT3_HEAD_SIZE = 64
#: unilm's normalisation for BEiT-3 (timm's IMAGENET_INCEPTION_MEAN / _STD).
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
#: Text length of unilm's retrieval fine-tuning (``--num_max_bpe_tokens 64``).
DEFAULT_MAX_LENGTH = 64
#: fairseq reserves position rows 0 and 1; token i uses row i + 2 (torchscale ``PositionalEmbedding``).
POSITION_OFFSET = 2
#: Checkpoint keys dropped by name: the contrastive temperature of training.
IGNORED_KEYS = frozenset({"logit_scale"})
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


def resize_vision_positions(table: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Bicubically resize the vision position table (3 + n, C) to ``num_patches`` patches.

    Same procedure as unilm's ``load_model_and_may_interpolate``: the two fairseq rows and the
    class token's row are kept, the patch grid is resized as a (C, side, side) image.

    Raises:
        Beit3ImportError: a grid that is not square.
    """
    extra = 1 + POSITION_OFFSET
    old = table.shape[0] - extra
    if old == num_patches:
        return table
    old_side, new_side = math.isqrt(old), math.isqrt(num_patches)
    if old_side * old_side != old or new_side * new_side != num_patches:
        raise Beit3ImportError(f"vision positions of {old} patches cannot be resized to {num_patches}")
    grid = table[extra:].reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_side * new_side, -1).to(table.dtype)
    log.info("resized BEiT-3 vision positions from %dx%d to %dx%d patches", old_side, old_side, new_side, new_side)
    return torch.cat([table[:extra], grid], dim=0)


def load_beit3(path: str | Path, *, image_size: int | None = None,
               head_size: int = BEIT3_HEAD_SIZE) -> Beit3ForRetrieval:
    """Build a :class:`Beit3ForRetrieval` holding an original unilm checkpoint's weights, strictly.

    Args:
        path: ``.pth`` as unilm saves it (state dict under ``model`` or ``module``, keys
            ``beit3.*``, ``language_head.weight``, ``vision_head.weight``, ``logit_scale``), read
            weights-only; or a ``.safetensors`` conversion
            (:func:`dar_lib.models.blip_import.convert_to_safetensors`).
        image_size: image side in pixels; default: the checkpoint's own (384 for the released
            retrieval models); another size resizes the vision positions bicubically.
        head_size: attention head size (:data:`BEIT3_HEAD_SIZE`); heads = ``embed_dim // head_size``.

    Returns:
        The model in eval mode, on the CPU, in float32 (``load_state_dict`` copies a half-precision
        checkpoint's tensors into the float32 parameters).

    Raises:
        FileNotFoundError: no such file (the message says where to get it).
        Beit3ImportError: an unreadable file, or keys that are unknown, missing or mis-shaped
            (all listed, with the file named).
    """
    from .blip_import import read_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BEiT-3 checkpoint not found: {path}; {WHERE_TO_GET}")
    state = read_state_dict(path, what="BEiT-3 checkpoint", error=Beit3ImportError)
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    cfg = Beit3Config.from_state_dict(state, head_size=head_size, source=str(path))
    if image_size is not None and int(image_size) != cfg.img_size:
        if int(image_size) % cfg.patch_size:
            raise Beit3ImportError(f"{path}: image_size {image_size} is not a multiple of the patch size "
                                   f"{cfg.patch_size}")
        cfg = dataclasses.replace(cfg, img_size=int(image_size))
        key = "beit3.encoder.embed_positions.A.weight"
        state[key] = resize_vision_positions(state[key], cfg.num_patches)
    from .blip_import import describe_mismatch

    model = Beit3ForRetrieval(cfg)
    problems = describe_mismatch(state, model.state_dict())
    if problems:
        raise Beit3ImportError(f"{path} does not match BEiT3ForRetrieval ({cfg.layers} layers, {cfg.embed_dim} wide); "
                               + problems)
    model.load_state_dict(state, strict=True)
    return model.eval()


class Beit3Tokenizer:
    """unilm's BEiT-3 text tokenisation over ``sentencepiece`` (transformers 4's slow ``XLMRobertaTokenizer``).

    Ids: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, a sentencepiece piece of id ``i > 0`` is
    ``i + 1`` (fairseq offset) and ``<mask>`` is ``len(pieces) + 1``. A text becomes ``<s>`` + its
    pieces + ``</s>``; truncation keeps the first ``max_length - 2`` pieces, as unilm's
    ``_get_text_segment`` does. Called like a transformers tokenizer (the subset the encoders use).
    Literal special-token strings inside a text (``"<s>"``) are encoded as plain text.

    Args:
        spm_path: the sentencepiece model (``beit3.spm``).

    Raises:
        FileNotFoundError: no such file. Beit3ImportError: a file sentencepiece cannot load.
    """

    bos_token_id, pad_token_id, eos_token_id, unk_token_id = 0, 1, 2, 3
    fairseq_offset = 1

    def __init__(self, spm_path: str | Path):
        import sentencepiece

        path = Path(spm_path)
        if not path.is_file():
            raise FileNotFoundError(f"BEiT-3 sentencepiece model not found: {path}; {WHERE_TO_GET}")
        self.path = path
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as exc:
            raise Beit3ImportError(f"{path}: not a sentencepiece model ({exc})") from exc
        self.mask_token_id = len(self.sp) + self.fairseq_offset

    @property
    def vocab_size(self) -> int:
        """Ids in use: the pieces plus the fairseq specials and ``<mask>``."""
        return len(self.sp) + self.fairseq_offset + 1

    def tokenize(self, text: str) -> list[str]:
        """Sentencepiece pieces of ``text``."""
        return self.sp.encode(str(text), out_type=str)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Piece -> id with the fairseq mapping (unknown pieces -> ``<unk>`` 3)."""
        special = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        out = []
        for t in tokens:
            if t in special:
                out.append(special[t])
                continue
            i = self.sp.piece_to_id(t)
            out.append(i + self.fairseq_offset if i else self.unk_token_id)
        return out

    def encode(self, text: str, max_length: int | None = None, add_special_tokens: bool = True) -> list[int]:
        """Ids of one text (``<s>`` ... ``</s>``), cut to ``max_length`` ids when given."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if not add_special_tokens:
            return ids[:max_length] if max_length is not None else ids
        if max_length is not None:
            ids = ids[:max(max_length - 2, 0)]
        return [self.bos_token_id] + ids + [self.eos_token_id]

    def __call__(self, texts: Sequence[str] | str, padding: bool = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None,
                 add_special_tokens: bool = True, **_ignored) -> dict:
        """Tokenise a batch into ``{"input_ids", "attention_mask"}``: lists, or padded int64 tensors.

        Args:
            texts: one text or a list.
            padding: pad to the longest text with ``<pad>`` (1) (implied by ``return_tensors``).
            truncation: cut each text to ``max_length`` ids (specials included).
            max_length: the id limit used when ``truncation`` is on.
            return_tensors: ``"pt"`` for int64 tensors (n, longest).
            add_special_tokens: wrap in ``<s>`` ... ``</s>``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        limit = max_length if truncation else None
        ids = [self.encode(t, limit, add_special_tokens) for t in texts]
        mask = [[1] * len(x) for x in ids]
        if padding or return_tensors:
            longest = max((len(x) for x in ids), default=0)
            ids = [x + [self.pad_token_id] * (longest - len(x)) for x in ids]
            mask = [m + [0] * (longest - len(m)) for m in mask]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids, dtype=torch.long).reshape(len(ids), -1),
                    "attention_mask": torch.tensor(mask, dtype=torch.long).reshape(len(ids), -1)}
        return {"input_ids": ids, "attention_mask": mask}


class Beit3Encoder(_HFDualEncoder):
    """BEiT-3 retrieval features: the :class:`~dar_lib.models.base.Encoder` interface over :class:`Beit3ForRetrieval`.

    Image: ``vision_head`` of the class token of the vision-only pass; text: ``language_head`` of
    ``<s>`` of the text-only pass with padding masked; both L2-normalised (unilm's
    ``BEiT3ForRetrieval.forward(only_infer=True)``).

    Args:
        model: a loaded :class:`Beit3ForRetrieval`.
        tokenizer: its :class:`Beit3Tokenizer`.
        preprocess: image preprocessing; default: square bicubic resize to the model's image size,
            mean/std 0.5 (unilm's evaluation transform).
        id: names the weights (for fingerprints).
        revision: for fingerprints (local files have none; the id carries a file hash).
        device: torch device (default ``settings.default_device()``). dtype: torch dtype (default float32).
        batch_size: items per forward pass.
        max_length: text token limit, specials included (default 64, unilm's retrieval setting;
            at most the text position table minus 2).

    Raises:
        Beit3ImportError: a tokenizer whose ids do not fit the model's text embedding.
    """

    kind = "beit3"

    def __init__(self, model: Beit3ForRetrieval, tokenizer: Beit3Tokenizer, preprocess: ImagePreprocessor | None = None,
                 *, id: str = "beit3", revision: str | None = None, device: str | None = None, dtype=None,
                 batch_size: int = 32, max_length: int = DEFAULT_MAX_LENGTH):
        cfg = model.config
        if tokenizer.vocab_size > cfg.vocab_size:
            raise Beit3ImportError(f"{tokenizer.path}: {tokenizer.vocab_size} token ids do not fit the checkpoint's "
                                   f"{cfg.vocab_size}-row text embedding; wrong sentencepiece model?")
        if preprocess is None:
            preprocess = ImagePreprocessor(cfg.img_size, mean=INCEPTION_MEAN, std=INCEPTION_STD, mode="square")
        max_length = min(int(max_length), cfg.max_source_positions - POSITION_OFFSET)
        super().__init__(model, tokenizer, preprocess, id=id, revision=revision, device=device, dtype=dtype,
                         batch_size=batch_size, max_length=max_length)
        self.dim = cfg.embed_dim

    def _text_features(self, input_ids, attention_mask):
        return self.model.text_features(input_ids, padding_mask=attention_mask == 0)

    def _image_features(self, pixel_values):
        return self.model.image_features(pixel_values)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, spm: str | Path, *, image_size: int | None = None,
                        head_size: int = BEIT3_HEAD_SIZE, device: str | None = None, dtype=None,
                        batch_size: int = 32, max_length: int | None = None) -> "Beit3Encoder":
        """Load unilm's checkpoint and sentencepiece model (the ``beit3:<.pth>+<.spm>`` id).

        Args:
            checkpoint: e.g. ``beit3_base_patch16_384_coco_retrieval.pth``.
            spm: the sentencepiece model ``beit3.spm``.
            image_size: pixels (default: the checkpoint's own). head_size: see :func:`load_beit3`.
            device: torch device. dtype: torch dtype. batch_size: items per forward pass.
            max_length: text token limit (default 64).

        Returns:
            The encoder; its ``id`` names both files by name, size and a hash of their first MiB.

        Raises:
            ValueError: a checkpoint or sentencepiece path is not given.
            FileNotFoundError: a file is missing (the message says where to get it).
            Beit3ImportError: the files do not load (see :func:`load_beit3`).
        """
        from dar_lib.cachekeys import file_tag

        if not str(checkpoint) or not str(spm):
            raise ValueError(f"a BEiT-3 encoder needs both files, as 'beit3:<checkpoint .pth>+<sentencepiece .spm>' "
                             f"(got checkpoint {str(checkpoint)!r}, sentencepiece model {str(spm)!r}); {WHERE_TO_GET}")
        tok = Beit3Tokenizer(spm)
        model = load_beit3(checkpoint, image_size=image_size, head_size=head_size)
        ck, sp = Path(checkpoint), Path(spm)
        return cls(model, tok, id=f"beit3:{ck.name}#{file_tag(str(ck))}+{sp.name}#{file_tag(str(sp))}",
                   device=device, dtype=dtype, batch_size=batch_size, max_length=max_length or DEFAULT_MAX_LENGTH)
