"""Where each word looks: a map over the X-ray for every token of one variant's caption.

Only on request, and after captioning: one teacher-forced forward pass over the caption already
generated (greedy or beam search alike) with `output_attentions=True`, plus, for the default
method, the gradient of every token's logit (batched backward passes over the caption's prefixes,
`_target_chunks`). Captioning itself never pays for it.

Where the image enters the text:
- GIT: one transformer over [image tokens; text tokens]; a text token's row of the decoder's
  self-attention reaches the image tokens (column 0 is the ViT's CLS token, dropped; the rest is
  the patch grid, row-major).
- BLIP: the text decoder's cross-attention to the ViT's tokens (CLS first, dropped). The forward
  of `BlipForConditionalGeneration` does not return it, so we run the ViT, then the text decoder
  on the image embeddings with `output_attentions=True`.

A token's map is read at the position that predicts it (the previous one), where the model
decided to say it.

Two methods (`METHODS`); the name of the one used goes with every map shown:
- "relevance" (default): gradient-weighted relevance propagation, Chefer, Gur & Wolf (2021),
  "Generic attention-model explainability for interpreting bi-modal and encoder-decoder
  transformers". Each layer's attention A is weighted by the gradient of the token's logit,
  Ā = mean over heads of max(0, ∂logit/∂A ⊙ A) (their eq. 5), and relevance accumulates through
  all layers with the residual connections: R ← R + Ā·R for self-attention (eq. 6-7: GIT's joint
  sequence, BLIP's text), and their eq. 10 for BLIP's cross-attention,
  R_text→image ← R_text→image + (R̄_text)ᵀ·Ā_cross·R̄_image (R̄: the relevance with its residual
  part kept apart and the rest of each row normalised to sum 1, eq. 8-9). The image tokens' own
  mixing inside the ViT is taken as the identity (R̄_image = I): the map explains the decoder's
  use of the patches. In a causal decoder the target's row of (R̄_text)ᵀ·Ā_cross is its own row of
  Ā_cross scaled by R̄_text's diagonal (the rows of Ā after it have zero gradient, and R̄_text is
  lower triangular); the tokens before it contribute through the self-attention rule.
  The relevance is computed in float32 from the model's attention and gradient tensors, whatever
  the model's dtype: R accumulates small terms onto the identity, which bf16 (8 bits of
  mantissa: 1 + 0.004 rounds to 1) would drop, and products of small gradients and attention
  weights fall below fp16's normal range (6e-5); these tensors are small next to the passes.
  It is the default because it is the better-founded one: it is specific to the token being
  explained (raw attention is the same whichever token the head then helps to predict), it
  counts only attention that raised that token's logit (heads that attend without contributing,
  or against it, are ignored), and it follows information through every layer and the residual
  stream instead of reading one layer's weights as an explanation, which attention on its own is
  known not to be (Jain & Wallace, 2019; Serrano & Smith, 2019). Its cost: a backward pass
  per token, batched (benchmarks/heatmap_cost.py measures it).
- "attention": raw attention, the mean over heads of the last `RAW_LAYERS` layers (3: the
  layers nearest the prediction, averaged to smooth single-layer noise; a quarter of BLIP's 12
  decoder layers, half of GIT's 6). One forward pass, no gradients.

A word's map is the mean of its WordPiece tokens' maps. Every map is normalised so that its
maximum is 1 (0 everywhere when nothing was relevant): maps compare places within one word,
not strengths between words or models. `benchmarks/heatmap_deletion.py` checks faithfulness.

The forward pass reads the caption's generated token ids (`CaptionResult.token_ids`), so the
maps are of exactly the tokens the model wrote. A caption known only as text (a report's CSV of
predictions, an example cached by an older version) is tokenised again; decoded text does not
always tokenise back to the same pieces (an untrained model's `[unused5]` becomes four tokens).

Every map is an explanation aid, never evidence of a finding (`DISCLAIMER`, shown with each).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache

from .captioner import Captioner, VariantUnavailable, dtype_name
from .errors import first_line
from .findings import extract_findings

log = logging.getLogger(__name__)

METHODS = ("relevance", "attention")
DEFAULT_METHOD = "relevance"
RAW_LAYERS = 3
RELEVANCE_CHUNK = 10  # target tokens per backward pass (`_target_chunks`)
METHOD_LABELS = {
    "relevance": "gradient-weighted relevance (Chefer et al., 2021)",
    "attention": f"raw attention (mean of heads, last {RAW_LAYERS} layers)",
}
DISCLAIMER = "Explanation aid only: where the model looked, not evidence of a finding."
COLOUR_MAP = "turbo"


class HeatmapsUnavailable(RuntimeError):
    """Maps cannot be made for this variant or caption; the message says why."""


@dataclass(frozen=True)
class InputGeometry:
    """Where the model's input lies on the original image, as the image processor made it.

    box: (left, top, right, bottom) as fractions of the original image's width and height (so it
    holds for any displayed size of that image); the processor resized that region to the
    model's input (a centre crop leaves the rest out; a plain resize takes it all).
    grid: (rows, cols) of patches over the model's input.
    """

    box: tuple[float, float, float, float]
    grid: tuple[int, int]


def input_geometry(image_processor, image_size: tuple[int, int], patch_size: int) -> InputGeometry:
    """Undo the processor's resize and centre crop, read from its own config (whatever it says)."""
    width, height = image_size
    size = image_processor.size
    if not image_processor.do_resize:
        resized = (width, height)
    elif size.shortest_edge:  # shorter side to the size, aspect kept (transformers' own rounding)
        short, long = sorted((width, height))
        new_short, new_long = size.shortest_edge, int(size.shortest_edge * long / short)
        resized = (new_short, new_long) if width <= height else (new_long, new_short)
    elif size.height and size.width:
        resized = (size.width, size.height)
    else:
        raise HeatmapsUnavailable(f"the image processor's resize {dict(size)} is not one heatmaps can undo")
    left, top, right, bottom = 0, 0, resized[0], resized[1]
    if getattr(image_processor, "do_center_crop", False):
        crop = image_processor.crop_size
        if crop.width > resized[0] or crop.height > resized[1]:  # transformers would pad: not undone here
            raise HeatmapsUnavailable(f"the image processor's crop {dict(crop)} is larger than the resized image")
        left, top = (resized[0] - crop.width) // 2, (resized[1] - crop.height) // 2
        right, bottom = left + crop.width, top + crop.height
    box = (left / resized[0], top / resized[1], right / resized[0], bottom / resized[1])
    return InputGeometry(box, ((bottom - top) // patch_size, (right - left) // patch_size))


@dataclass(frozen=True)
class Heatmaps:
    """One caption's maps: per token and per word, each (rows, cols), values in [0, 1], max 1."""

    variant_id: str
    method: str
    tokens: list[str]  # WordPiece tokens of the caption
    words: list[str]
    word_tokens: list[list[int]]  # indices into tokens, per word
    token_maps: np.ndarray  # (tokens, rows, cols)
    word_maps: np.ndarray  # (words, rows, cols)
    geometry: InputGeometry
    dtype: str  # what the model computed in ("float32", "bfloat16", "float16")

    @property
    def grid(self) -> tuple[int, int]:
        return self.geometry.grid

    def word_map(self, word: str) -> np.ndarray | None:
        """The map of the first occurrence of `word` (case-insensitive), or None if it was not said."""
        for i, said in enumerate(self.words):
            if said.lower() == word.lower():
                return self.word_maps[i]
        return None

    def to_json(self) -> dict:
        """The CLI's JSON: variant, method, the model's dtype, grid, tokens, words, one map per word (rounded)."""
        return {
            "variant": self.variant_id,
            "method": self.method,
            "dtype": self.dtype,
            "grid": list(self.grid),
            "tokens": self.tokens,
            "words": self.words,
            "maps": np.round(self.word_maps.astype(float), 4).tolist(),
        }


def compute_heatmaps(
    captioner: Captioner, image: Image.Image, caption: str, method: str = DEFAULT_METHOD,
    token_ids: Sequence[int] = (),
) -> Heatmaps:
    """The maps of `caption` (as `captioner` wrote it for `image`, with these generated
    `token_ids` when known; else its text is tokenised) by `method`.

    Raises HeatmapsUnavailable (why, in words) when this variant or caption cannot have maps,
    and VariantUnavailable when the variant cannot be loaded.
    """
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; choose from {', '.join(METHODS)}")
    family = captioner.variant.family
    if family not in _TOKEN_MAPS:
        raise HeatmapsUnavailable(f"{captioner.label}: heatmaps are not implemented for {family} models")
    if method == "relevance" and captioner.quantize_int8:
        raise HeatmapsUnavailable(
            f"{captioner.label} runs in int8, whose layers give no gradients: use the raw attention method"
        )
    processor, model = captioner.processor, captioner.model
    input_ids = caption_input_ids(captioner, caption, token_ids)
    if input_ids.shape[1] < 2:
        raise HeatmapsUnavailable(f"{captioner.label}: the caption is empty, there is nothing to explain")
    patch_size = model.config.vision_config.patch_size
    geometry = input_geometry(processor.image_processor, image.size, patch_size)
    pixel_values = captioner.preprocess([image]).to(captioner.device, captioner.dtype)
    patch_maps = _TOKEN_MAPS[family](model, pixel_values, input_ids, method)
    rows, cols = geometry.grid
    if patch_maps.shape[1] != rows * cols:
        raise HeatmapsUnavailable(
            f"{captioner.label}: {patch_maps.shape[1]} image patches do not form the processor's "
            f"{rows}x{cols} grid"
        )
    token_maps = _normalised(patch_maps.float().cpu().numpy().reshape(-1, rows, cols))
    tokens = processor.tokenizer.convert_ids_to_tokens(input_ids[0, 1:].tolist())
    words, word_tokens = group_word_pieces(tokens)
    word_maps = _normalised(np.stack([token_maps[indices].mean(axis=0) for indices in word_tokens]))
    return Heatmaps(captioner.variant.id, method, tokens, words, word_tokens, token_maps, word_maps, geometry,
                    dtype_name(captioner.dtype))


def heatmaps_or_reason(
    captioner: Captioner, image: Image.Image, caption: str, method: str = DEFAULT_METHOD,
    token_ids: Sequence[int] = (),
) -> Heatmaps | str:
    """`compute_heatmaps` for the callers that go on without maps (the app's view, the report, the
    CLI): the maps, or why there are none. Maps are asked for after the captions are made, so no
    failure here may cost those: an unexpected one (a bug, an op the device cannot run) is logged
    with its traceback and named in the reason."""
    try:
        return compute_heatmaps(captioner, image, caption, method, token_ids)
    except (HeatmapsUnavailable, VariantUnavailable) as error:
        return str(error)
    except Exception as error:
        log.exception("%s: computing heatmaps failed", captioner.label)
        return f"{captioner.label}: computing them failed ({type(error).__name__}: {first_line(error)})"


def group_word_pieces(tokens: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """WordPiece tokens -> words ("##" continues the word before) and each word's token indices."""
    words: list[str] = []
    indices: list[list[int]] = []
    for i, token in enumerate(tokens):
        if token.startswith("##") and words:
            words[-1] += token[2:]
            indices[-1].append(i)
        else:
            words.append(token)
            indices.append([i])
    return words, indices


def finding_word_indices(words: Sequence[str]) -> list[int]:
    """Indices of the words that name a chest finding on their own ("effusion", "cardiomegaly"),
    first occurrence of each."""
    seen, indices = set(), []
    for i, word in enumerate(words):
        if word.lower() not in seen and extract_findings(word.lower()):
            seen.add(word.lower())
            indices.append(i)
    return indices


def _normalised(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (all-zero maps stay zero); values in [0, 1]."""
    maps = np.clip(maps, 0.0, None)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0).astype(np.float32)


def caption_input_ids(captioner: Captioner, caption: str, token_ids: Sequence[int] = ()) -> torch.Tensor:
    """(1, 1 + tokens): the caption's tokens (its generated ids, else its text tokenised) after
    the one generate() starts with (GIT's [CLS], BLIP's [DEC]), as the teacher-forced pass reads them."""
    config = captioner.model.config
    start = config.bos_token_id if captioner.variant.family == "git" else config.text_config.bos_token_id
    if not token_ids:
        token_ids = captioner.processor.tokenizer(caption, add_special_tokens=False).input_ids
    return torch.tensor([[start, *token_ids]], device=captioner.device)


def _per_token_gradients(targets: torch.Tensor, attentions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∂target_t/∂attention for every target token t at once (one batched backward pass):
    per layer (targets, heads, queries, keys). Gradients are taken with respect to the tensors
    the forward pass used (not views of them), and never accumulate into the weights."""
    one_per_target = torch.eye(len(targets), device=targets.device, dtype=targets.dtype)
    gradients = torch.autograd.grad(targets, attentions, grad_outputs=one_per_target, is_grads_batched=True)
    return [gradient[:, 0] for gradient in gradients]


def _target_logits(head: torch.nn.Linear, head_input: torch.Tensor, rows: torch.Tensor, token_ids: torch.Tensor):
    """The caption tokens' logits at the positions predicting them, from the output layer's input
    for those tokens only (equal to the model's logits there): the batched backward pass then
    starts from one number per token, not from a (text x vocabulary) logit tensor per token."""
    return (head_input[0, rows] * head.weight[token_ids]).sum(dim=-1) + head.bias[token_ids]


def _head_mean_of_positive(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s Ā: mean over heads of max(0, gradient ⊙ attention), in float32 (see above).

    attention (1, heads, q, k), gradient (targets, heads, q, k) -> (targets, q, k)."""
    return (gradient.float() * attention.float()).clamp(min=0).mean(dim=1)


def _target_chunks(n_targets: int) -> list[tuple[int, int]]:
    """Relevance's target rows in chunks of `RELEVANCE_CHUNK`, (first, end) each.

    A causal decoder's row t depends on rows 0..t only, so a chunk's backward pass runs over the
    prefix that ends at its last row, not the whole caption: the batched backward pass costs
    targets x rows, which chunks cut to about (1 + 1/chunks) / 2 of one pass over all rows.
    """
    return [(first, min(first + RELEVANCE_CHUNK, n_targets)) for first in range(0, n_targets, RELEVANCE_CHUNK)]


def _git_token_maps(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, method: str) -> torch.Tensor:
    """(caption tokens, patches) for GIT: text rows of the decoder's attention, image columns.

    The image tokens never attend to the text, so their keys and values are computed once,
    without gradients, into a cache (as generate() does); the text then runs over that cache.
    The attention and logits equal one plain forward pass over [image; text] (the tests check),
    and gradients flow through the text rows only, not the 197 image rows: the image tokens'
    mixing among themselves is taken as the identity, as for BLIP's ViT.
    """
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(input_ids=input_ids[:, :1], pixel_values=pixel_values, cache=cache, use_cache=True)
        cache.crop(-1)  # keep the image tokens only; the text starts again below
    n_image = cache.get_seq_length()  # CLS + patches
    n_targets = input_ids.shape[1] - 1  # row i predicts token i + 1
    if method == "attention":
        with torch.no_grad():
            attentions = _git_text_pass(model, cache, input_ids, relevance=False).attentions
        return torch.cat(attentions[-RAW_LAYERS:]).float().mean(dim=(0, 1))[:n_targets, 1:n_image]
    maps = []
    for first, end in _target_chunks(n_targets):
        prefix = input_ids[:, :end]
        with torch.enable_grad():
            output = _git_text_pass(model, cache, prefix, relevance=True)
        cache.crop(-end)  # the prefix's text leaves the cache for the next chunk
        rows = torch.arange(first, end)
        targets = _target_logits(model.output, output.hidden_states[-1], rows, input_ids[0, rows + 1])
        gradients = _per_token_gradients(targets, output.attentions)
        with torch.no_grad():
            # Row `row` of R = (I + Ā_L)···(I + Ā_1) (the rule R <- R + Ā·R from R = I), one per target,
            # with the image rows of every Ā zero (see above): only the text part of a row propagates.
            relevance_rows = torch.zeros(len(rows), n_image + end, device=input_ids.device)
            relevance_rows[torch.arange(len(rows)), n_image + rows] = 1.0
            for attention, gradient in zip(reversed(output.attentions), reversed(gradients)):
                mixed = _head_mean_of_positive(attention, gradient)  # (targets, text, image + text)
                relevance_rows = relevance_rows + torch.bmm(relevance_rows[:, None, n_image:], mixed)[:, 0]
        maps.append(relevance_rows[:, 1:n_image])
    return torch.cat(maps)


def _git_text_pass(model, cache: DynamicCache, input_ids: torch.Tensor, relevance: bool):
    """The caption's rows over the cached image tokens; per layer, attention (1, heads, text,
    CLS + patches + text)."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
    return model(input_ids=input_ids, cache=cache, use_cache=True, position_ids=positions,
                 output_attentions=True, output_hidden_states=relevance)


def _blip_token_maps(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, method: str) -> torch.Tensor:
    """(caption tokens, patches) for BLIP: the text decoder's cross-attention to the ViT's patches."""
    with torch.no_grad():  # the ViT's own mixing is not explained (identity), so no gradients there
        image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    n_targets = input_ids.shape[1] - 1  # row i predicts token i + 1
    if method == "attention":
        with torch.no_grad():
            output = model.text_decoder(input_ids=input_ids, encoder_hidden_states=image_embeds, output_attentions=True)
        return torch.cat(output.cross_attentions[-RAW_LAYERS:]).float().mean(dim=(0, 1))[:n_targets, 1:]
    head = model.text_decoder.cls.predictions  # a transform, then the vocabulary layer
    maps = []
    for first, end in _target_chunks(n_targets):
        with torch.enable_grad():
            output = model.text_decoder(input_ids=input_ids[:, :end], encoder_hidden_states=image_embeds,
                                        output_attentions=True, output_hidden_states=True)
        # Per layer: self-attention (1, heads, text, text), cross-attention (1, heads, text, CLS + patches).
        rows, n_layers = torch.arange(first, end), len(output.attentions)
        targets = _target_logits(head.decoder, head.transform(output.hidden_states[-1]), rows, input_ids[0, rows + 1])
        gradients = _per_token_gradients(targets, output.attentions + output.cross_attentions)
        with torch.no_grad():
            eye = torch.eye(end, device=input_ids.device)
            text_text = eye.expand(len(rows), end, end)
            text_image = torch.zeros(len(rows), end, image_embeds.shape[1], device=input_ids.device)
            for layer in range(n_layers):
                a_self = _head_mean_of_positive(output.attentions[layer], gradients[layer])
                a_cross = _head_mean_of_positive(output.cross_attentions[layer], gradients[n_layers + layer])
                text_text, text_image = text_text + a_self @ text_text, text_image + a_self @ text_image
                # eq. 10 with R̄_image = I (the ViT's mixing as the identity, above)
                text_image = text_image + _residual_normalised(text_text, eye).transpose(1, 2) @ a_cross
        maps.append(text_image[torch.arange(len(rows)), rows, 1:])
    return torch.cat(maps)


def _residual_normalised(relevance: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s R̄: R - I with rows summing to 1, plus I (the residual's share kept apart)."""
    mixed = relevance - eye
    sums = mixed.sum(dim=-1, keepdim=True)
    return torch.where(sums > 0, mixed / sums.clamp(min=1e-12), mixed) + eye


_TOKEN_MAPS = {"git": _git_token_maps, "blip": _blip_token_maps}


def heat_layer(word_map: np.ndarray, geometry: InputGeometry, image_size: tuple[int, int]) -> np.ndarray:
    """A map upsampled onto the image's pixels: (height, width) in [0, 1], NaN outside the model's input."""
    width, height = image_size
    left, right = (round(v * width) for v in geometry.box[::2])  # inside the image: see input_geometry
    top, bottom = (round(v * height) for v in geometry.box[1::2])
    region = Image.fromarray(word_map.astype(np.float32)).resize((right - left, bottom - top), Image.Resampling.BILINEAR)
    layer = np.full((height, width), np.nan, dtype=np.float32)
    layer[top:bottom, left:right] = np.asarray(region)
    return np.clip(layer, 0.0, 1.0)


def overlay(image: Image.Image, word_map: np.ndarray, geometry: InputGeometry, opacity: float = 0.5) -> Image.Image:
    """The image with a word's map blended over the region the model saw (`COLOUR_MAP`, 0 to 1);
    the parts the processor cropped away are dimmed, since no map can speak for them."""
    from matplotlib import colormaps  # only where a map is drawn

    layer = heat_layer(word_map, geometry, image.size)
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    seen = ~np.isnan(layer)
    colours = colormaps[COLOUR_MAP](np.nan_to_num(layer))[..., :3]
    blended = np.where(seen[..., None], (1 - opacity) * base + opacity * colours, 0.4 * base)
    return Image.fromarray((blended * 255).round().astype(np.uint8))
