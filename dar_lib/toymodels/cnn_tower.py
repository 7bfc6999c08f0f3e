"""The toy encoders' convolutional image tower (v3), as a transformers model that loads offline.

A 4-px-patch ViT could not learn the toy world's 6-10 px shapes in any budget we tried (a linear
probe read shape at 32-40%: ``measure/toy_image_towers.py``); a small CNN reads every fact at
>= 95% in minutes. The tower is five 3x3 convolutions, each followed by batch norm and GELU
(widths 32, 64, 64, 128, 128; the 2nd and 4th with stride 2, so a 32 px image becomes an
8x8x128 map), and the map *flattened*: no global pooling, so the grid keeps where things are.
Its ``pooler_output`` is that flat vector (``hidden_size = 8 * 8 * 128``), and the one linear
layer to the 128-d embedding is the dual encoder's ``visual_projection``, exactly where a CLIP
model keeps its own.

The config and model are registered with ``AutoConfig`` / ``AutoModel`` on import (model type
``toy-cnn-vision``), so a ``VisionTextDualEncoderModel`` whose ``vision_config`` names it loads
with plain ``from_pretrained`` from safetensors: no remote code, no pickle.
:func:`load_dual_encoder` is the one loader of a toy dual encoder folder.

Examples:
    >>> import torch
    >>> tower = ToyCnnVisionModel(ToyCnnVisionConfig())
    >>> tower.config.hidden_size
    8192
    >>> tower(pixel_values=torch.zeros(2, 3, 32, 32)).pooler_output.shape
    torch.Size([2, 8192])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID
from dar_lib.weightfiles import check_model_files

MODEL_TYPE = "toy-cnn-vision"


class ToyCnnVisionConfig(PretrainedConfig):
    """Configuration of :class:`ToyCnnVisionModel`.

    Args:
        image_size: input side in pixels (square images).
        num_channels: input channels.
        widths: output channels of each 3x3 convolution.
        strides: stride of each convolution (same length as ``widths``).
        projection_dim: the embedding size of the dual encoder the tower is part of (the fact heads
            and the standalone tower :class:`ToyCnnVisionModelWithProjection` use it).

    Raises:
        ValueError: ``widths`` and ``strides`` differ in length, or the strides do not divide
            ``image_size``.
    """

    model_type = MODEL_TYPE

    def __init__(self, image_size: int = 32, num_channels: int = 3, widths: Sequence[int] = (32, 64, 64, 128, 128),
                 strides: Sequence[int] = (1, 2, 1, 2, 1), projection_dim: int = 128, **kwargs):
        widths, strides = [int(w) for w in widths], [int(s) for s in strides]
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"toy CNN tower: {len(widths)} widths for {len(strides)} strides")
        side = int(image_size)
        for s in strides:
            if s < 1 or side % s:
                raise ValueError(f"toy CNN tower: strides {strides} do not divide image_size {image_size}")
            side //= s
        self.image_size, self.num_channels = int(image_size), int(num_channels)
        self.widths, self.strides, self.projection_dim = widths, strides, int(projection_dim)
        #: Side of the last feature map (8 for 32 px and two stride-2 layers).
        self.map_size = side
        #: Size of the flat feature the projection reads (``pooler_output``).
        self.hidden_size = widths[-1] * side * side
        super().__init__(**kwargs)


class ToyCnnVisionModel(PreTrainedModel):
    """The convolutional image tower: ``pixel_values (n, 3, H, W)`` -> ``pooler_output (n, hidden_size)``.

    ``last_hidden_state`` is the last feature map ``(n, widths[-1], map_size, map_size)`` (8 x 8 for 32 px
    and the default strides); ``pooler_output`` is it
    flattened (channel-major, as ``torch.flatten``). Batch norm uses batch statistics in ``train()``
    mode and its running statistics in ``eval()`` mode (every encoder puts its model in eval mode).
    """

    config_class = ToyCnnVisionConfig
    main_input_name = "pixel_values"
    base_model_prefix = "toy_cnn"

    def __init__(self, config: ToyCnnVisionConfig):
        super().__init__(config)
        layers, c_in = [], config.num_channels
        for width, stride in zip(config.widths, config.strides):
            layers += [nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.GELU()]
            c_in = width
        self.layers = nn.Sequential(*layers)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features ** -0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs):
        """``(n, 3, H, W)`` normalised pixels -> ``BaseModelOutputWithPooling`` (a tuple with ``return_dict=False``).

        Extra keywords a dual encoder passes (``output_attentions``, ``output_hidden_states``) are
        accepted and ignored: a CNN has neither.
        """
        fmap = self.layers(pixel_values)
        flat = fmap.flatten(1)
        if return_dict is False:
            return fmap, flat
        return BaseModelOutputWithPooling(last_hidden_state=fmap, pooler_output=flat)


class ToyCnnVisionModelWithProjection(PreTrainedModel):
    """The tower with its projection, trained alone before any text tower (:mod:`.image_tower`).

    Its weights are named as in a ``VisionTextDualEncoderModel`` (``vision_model.*``,
    ``visual_projection.weight``), so :func:`new_dual_encoder` copies them across unchanged.
    """

    config_class = ToyCnnVisionConfig
    main_input_name = "pixel_values"
    base_model_prefix = "toy_cnn_with_projection"

    def __init__(self, config: ToyCnnVisionConfig):
        super().__init__(config)
        self.vision_model = ToyCnnVisionModel(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    _init_weights = ToyCnnVisionModel._init_weights

    def forward(self, pixel_values: torch.Tensor, **kwargs):
        """``(n, 3, H, W)`` -> un-normalised embeddings ``(n, projection_dim)`` (``.image_embeds``)."""
        from transformers.models.clip.modeling_clip import CLIPVisionModelOutput

        out = self.vision_model(pixel_values=pixel_values)
        return CLIPVisionModelOutput(image_embeds=self.visual_projection(out.pooler_output),
                                     last_hidden_state=out.last_hidden_state)


AutoConfig.register(MODEL_TYPE, ToyCnnVisionConfig, exist_ok=True)
AutoModel.register(ToyCnnVisionConfig, ToyCnnVisionModel, exist_ok=True)


def new_dual_encoder(tower: ToyCnnVisionModelWithProjection, vocab_size: int, seed: int, max_length: int = 256,
                     width: int = 128, layers: int = 4):
    """A ``VisionTextDualEncoderModel``: the given image tower and a fresh seeded CLIP text transformer.

    Args:
        tower: the (trained) image tower; its weights are copied.
        vocab_size: the tokenizer's vocabulary size.
        seed: seeds the text tower's initialisation.
        max_length: text positions (the longest round-10 dialogue must fit).
        width, layers: the text transformer's hidden size and depth.

    Returns:
        The dual encoder in float32; text side initialised, image side equal to ``tower``.
    """
    from transformers import CLIPTextConfig, VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width,
                          num_hidden_layers=layers, num_attention_heads=max(1, width // 32),
                          max_position_embeddings=max_length, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                          eos_token_id=EOS_ID, projection_dim=tower.config.projection_dim)
    vision = {k: v for k, v in tower.config.to_dict().items() if k not in ("_name_or_path", "architectures")}
    config = VisionTextDualEncoderConfig(vision_config=vision, text_config=text.to_dict(),
                                         projection_dim=tower.config.projection_dim, logit_scale_init_value=2.6592)
    torch.manual_seed(seed)
    model = VisionTextDualEncoderModel(config)
    model.vision_model.load_state_dict(tower.vision_model.state_dict())
    model.visual_projection.load_state_dict(tower.visual_projection.state_dict())
    return model.float().eval()


def load_dual_encoder(folder: str | Path, dtype: torch.dtype = torch.float32):
    """A toy dual encoder saved with ``save_pretrained`` (``AutoModel``: the v3 ``VisionTextDualEncoderModel``
    with this CNN tower, or an older ``CLIPModel``), in ``dtype`` and eval mode.

    Raises:
        OSError: no model in ``folder`` (transformers' own error, naming the folder).
        DataError: a damaged weight or config file (named).
    """

    check_model_files(folder, f"toy dual encoder {str(folder)!r}")
    model = AutoModel.from_pretrained(str(folder), dtype=dtype)
    return model.eval()
