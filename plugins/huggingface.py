"""Hugging Face transformers models (the ``hf`` extra: ``pip install 'harness[hf]'``).

Each model is built from transformers' own configuration class with random weights, so
nothing is downloaded and every size is a dimension: the sequence length ``S``, the
image size ``H`` x ``W``, the width ``HIDDEN``, the depth ``LAYERS`` and the vocabulary
``V`` sweep through ``--dim`` like any built-in model's. The defaults are small
published shapes (BERT-mini, ViT-tiny) or their like, sized for a laptop CPU.

Models of the hub are added by id through ``HARNESS_HF_MODELS`` (see
:func:`hub_models`): only their ``config.json`` is fetched, the weights stay random.

Without transformers installed the plugin registers no model, and its ``transformers``
suite says what to install.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

import harness
from harness import Dim, Input, ModelSpec, Suite
from harness.errors import PluginError

AVAILABLE = importlib.util.find_spec("transformers") is not None
INSTALL = "install the hf extra: pip install 'harness[hf]'"
SUITE = "transformers"
HUB_ENV = "HARNESS_HF_MODELS"
SOURCE = "Hugging Face transformers"


class Transformer(nn.Module):
    """A transformers model behind the harness's calling convention: positional tensors
    in (passed as the keyword arguments ``inputs`` names), a tuple of the ``outputs``
    chosen from its output object out, so shapes can be declared and checked."""

    def __init__(self, model: nn.Module, inputs: Sequence[str], outputs: Sequence[str], **call):
        super().__init__()
        self.model = model
        self.inputs, self.outputs, self.call = tuple(inputs), tuple(outputs), call

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(**dict(zip(self.inputs, tensors)), **self.call)
        return tuple(result[key] for key in self.outputs)


def _transformers() -> Any:
    import transformers  # about a second: paid by the cases that use it, never by `list`

    return transformers


TOKENS = Input("input_ids", "(B, S)", dtype="index", high="V")
PIXELS = Input("pixel_values", "(B, 3, H, W)")
TEXT_DIMS = {
    "S": Dim(128, doc="sequence length (tokens)"),
    "V": Dim(30522, kwarg="vocab_size", doc="vocabulary size"),
    "HIDDEN": Dim(256, kwarg="hidden_size", doc="model width"),
    "LAYERS": Dim(4, kwarg="layers", doc="transformer blocks"),
    "HEADS": Dim(4, kwarg="heads", doc="attention heads"),
}
WIDTH_SPLITS = "HIDDEN % HEADS == 0"


def bert(vocab_size: int, hidden_size: int, layers: int, heads: int) -> nn.Module:
    """BERT's encoder with its pooler (feed-forward 4 x wider, as in every BERT)."""
    hf = _transformers()
    config = hf.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
    )
    return Transformer(hf.BertModel(config), ["input_ids"], ["last_hidden_state", "pooler_output"])


def gpt2(vocab_size: int, hidden_size: int, layers: int, heads: int) -> nn.Module:
    """GPT-2 with its language-model head; no key/value cache (one full forward)."""
    hf = _transformers()
    config = hf.GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=layers, n_head=heads)
    return Transformer(hf.GPT2LMHeadModel(config), ["input_ids"], ["logits"], use_cache=False)


def llama(vocab_size: int, hidden_size: int, layers: int, heads: int, kv_heads: int) -> nn.Module:
    """Llama (RMSNorm, rotary positions, SwiGLU, grouped-query attention) with its head."""
    hf = _transformers()
    config = hf.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )
    return Transformer(hf.LlamaForCausalLM(config), ["input_ids"], ["logits"], use_cache=False)


def t5(vocab_size: int, hidden_size: int, layers: int, heads: int) -> nn.Module:
    """T5 encoder-decoder with its head, ``LAYERS`` blocks on each side."""
    hf = _transformers()
    config = hf.T5Config(
        vocab_size=vocab_size,
        d_model=hidden_size,
        d_kv=hidden_size // heads,
        d_ff=4 * hidden_size,
        num_layers=layers,
        num_heads=heads,
        decoder_start_token_id=0,
    )
    return Transformer(
        hf.T5ForConditionalGeneration(config),
        ["input_ids", "decoder_input_ids"],
        ["logits", "encoder_last_hidden_state"],
        use_cache=False,
    )


def vit(
    height: int, width: int, patch: int, hidden_size: int, layers: int, heads: int
) -> nn.Module:
    """ViT: ``P`` x ``P`` patches plus a class token through a transformer encoder."""
    hf = _transformers()
    config = hf.ViTConfig(
        image_size=(height, width),
        patch_size=patch,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
    )
    return Transformer(
        hf.ViTModel(config), ["pixel_values"], ["last_hidden_state", "pooler_output"]
    )


def convnext(channels: int, depth: int) -> nn.Module:
    """ConvNeXt: four stages of ``DEPTH`` blocks, widths C, 2C, 4C, 8C, 32x down-sampled."""
    hf = _transformers()
    config = hf.ConvNextConfig(depths=[depth] * 4, hidden_sizes=[channels * 2**i for i in range(4)])
    return Transformer(
        hf.ConvNextModel(config), ["pixel_values"], ["last_hidden_state", "pooler_output"]
    )


def _spec(name: str, constructor: Any, **fields: Any) -> ModelSpec:
    return ModelSpec(name, constructor, family="transformers", **{"source": SOURCE, **fields})


def builtin_models() -> list[ModelSpec]:
    """The ``transformers`` suite: an encoder, two decoders, an encoder-decoder and two
    vision models."""
    seq2seq = {**TEXT_DIMS, "V": Dim(32128, kwarg="vocab_size"), "T": Dim(32, doc="target length")}
    image = {"H": Dim(224, kwarg="height"), "W": Dim(224, kwarg="width")}
    return [
        _spec(
            "hf_bert",
            bert,
            inputs=[TOKENS],
            outputs=["(B, S, HIDDEN)", "(B, HIDDEN)"],
            dims=TEXT_DIMS,
            constraints=[WIDTH_SPLITS, "S <= 512"],
            description="BERT encoder (BERT-mini size: 4 layers, width 256, 4 heads)",
            tags=("encoder", "text"),
        ),
        _spec(
            "hf_gpt2",
            gpt2,
            inputs=[TOKENS],
            outputs=["(B, S, V)"],
            dims={**TEXT_DIMS, "V": Dim(50257, kwarg="vocab_size")},
            constraints=[WIDTH_SPLITS, "S <= 1024"],
            description="GPT-2 decoder with its LM head (4 layers, width 256, 4 heads)",
            tags=("decoder", "text"),
        ),
        _spec(
            "hf_llama",
            llama,
            inputs=[TOKENS],
            outputs=["(B, S, V)"],
            dims={**TEXT_DIMS, "V": Dim(32000, kwarg="vocab_size"), "KV": Dim(2, kwarg="kv_heads")},
            constraints=[WIDTH_SPLITS, "HEADS % KV == 0", "S <= 2048"],
            description="Llama decoder with its LM head (4 layers, width 256, 4 heads, 2 KV heads)",
            tags=("decoder", "text"),
        ),
        _spec(
            "hf_t5",
            t5,
            inputs=[TOKENS, Input("decoder_input_ids", "(B, T)", dtype="index", high="V")],
            outputs=["(B, T, V)", "(B, S, HIDDEN)"],
            dims=seq2seq,
            constraints=[WIDTH_SPLITS],
            description="T5 encoder-decoder with its LM head (4+4 layers, width 256, 4 heads)",
            tags=("encoder-decoder", "text"),
        ),
        _spec(
            "hf_vit",
            vit,
            inputs=[PIXELS],
            outputs=["(B, (H // P) * (W // P) + 1, HIDDEN)", "(B, HIDDEN)"],
            dims={
                **image,
                "P": Dim(16, kwarg="patch", doc="patch size"),
                "HIDDEN": Dim(192, kwarg="hidden_size"),
                "LAYERS": Dim(4, kwarg="layers"),
                "HEADS": Dim(3, kwarg="heads"),
            },
            constraints=[WIDTH_SPLITS, "H >= P and W >= P"],
            description="ViT image encoder (ViT-tiny width: 192, 3 heads; 4 layers; 16x16 patches)",
            tags=("encoder", "vision"),
        ),
        _spec(
            "hf_convnext",
            convnext,
            inputs=[PIXELS],
            outputs=["(B, 8 * C, H // 32, W // 32)", "(B, 8 * C)"],
            dims={
                "H": Dim(224),
                "W": Dim(224),
                "C": Dim(48, kwarg="channels"),
                "DEPTH": Dim(2, kwarg="depth"),
            },
            constraints=["H % 32 == 0 and W % 32 == 0"],
            description="ConvNeXt image backbone (widths 48-384, 2 blocks a stage)",
            tags=("cnn", "vision"),
        ),
    ]


def _from_hub(model_id: str, kind: str) -> nn.Module:
    hf = _transformers()
    config = hf.AutoConfig.from_pretrained(model_id)
    auto, inputs, outputs = HUB_KINDS[kind]
    call = {} if kind in ("encoder", "vision") else {"use_cache": False}
    return Transformer(getattr(hf, auto).from_config(config), inputs, outputs, **call)


HUB_KINDS = {  # kind: (Auto class, inputs by name, outputs by name)
    "encoder": ("AutoModel", ["input_ids"], ["last_hidden_state"]),
    "decoder": ("AutoModelForCausalLM", ["input_ids"], ["logits"]),
    "seq2seq": ("AutoModelForSeq2SeqLM", ["input_ids", "decoder_input_ids"], ["logits"]),
    "vision": ("AutoModelForImageClassification", ["pixel_values"], ["logits"]),
}


def hub_kind(config: Any) -> str:
    """Which head a hub model is measured with, from its configuration: an
    encoder-decoder, a causal language model (by the architectures it names), an image
    model (a configuration without a vocabulary), else a text encoder."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if any(re.search(r"CausalLM|LMHeadModel", a) for a in config.architectures or ()):
        return "decoder"
    if getattr(config, "vocab_size", None) is None and hasattr(config, "num_channels"):
        return "vision"
    return "encoder"


def hub_spec(name: str, model_id: str) -> ModelSpec:
    """The spec of the hub model ``model_id``: its configuration fetched (or read from the
    hub's cache, or from a local folder holding a ``config.json``), its sizes as numbers."""
    hf = _transformers()
    try:
        config = hf.AutoConfig.from_pretrained(model_id)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PluginError(
            f"{HUB_ENV}: cannot resolve {model_id!r} through the Hugging Face hub ({reason}); "
            f"check the id and the network, or remove it from {HUB_ENV}"
        ) from None
    kind = hub_kind(config)
    description = f"{model_id} ({config.model_type}, {kind}; random weights)"
    common = {
        "description": description,
        "tags": ("hub", kind),
        "source": f"{SOURCE} hub: {model_id}",
    }
    constructor = partial(_from_hub, model_id, kind)
    if kind == "vision":
        size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        return _spec(
            name,
            constructor,
            inputs=[Input("pixel_values", f"(B, {config.num_channels}, H, W)")],
            outputs=[f"(B, {config.num_labels})"],
            dims={"H": Dim(size), "W": Dim(size)},
            **common,
        )
    vocab, limit = config.vocab_size, getattr(config, "max_position_embeddings", None)
    tokens = Input("input_ids", "(B, S)", dtype="index", high=vocab)
    dims = {"S": Dim(min(128, limit or 128), doc="sequence length (tokens)")}
    constraints = [f"S <= {limit}"] if limit else []
    if kind == "seq2seq":
        return _spec(
            name,
            constructor,
            inputs=[tokens, Input("decoder_input_ids", "(B, T)", dtype="index", high=vocab)],
            outputs=[f"(B, T, {vocab})"],
            dims={**dims, "T": Dim(32, doc="target length")},
            constraints=constraints,
            **common,
        )
    width = vocab if kind == "decoder" else config.hidden_size
    return _spec(
        name,
        constructor,
        inputs=[tokens],
        outputs=[f"(B, S, {width})"],
        dims=dims,
        constraints=constraints,
        **common,
    )


def hub_models(value: str | None = None) -> list[ModelSpec]:
    """The models ``HARNESS_HF_MODELS`` names: hub ids separated by commas, each either
    ``ID`` (the model is named ``hf_`` and the id's last part in lower case, other
    characters as ``_``: ``google-bert/bert-base-uncased`` is ``hf_bert_base_uncased``)
    or ``NAME=ID``. Read at start-up, so a case's process resolves the same models."""
    value = os.environ.get(HUB_ENV, "") if value is None else value
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if entries and not AVAILABLE:
        raise PluginError(f"{HUB_ENV} names hub models but transformers is missing: {INSTALL}")
    specs = []
    for entry in entries:
        name, _, model_id = entry.rpartition("=") if "=" in entry else ("", "", entry)
        name = name.strip() or "hf_" + re.sub(
            r"[^a-z0-9]+", "_", model_id.rsplit("/", 1)[-1].lower()
        ).strip("_")
        specs.append(hub_spec(name, model_id.strip()))
    return specs


@harness.hookimpl
def harness_models() -> list[ModelSpec]:
    return [*builtin_models(), *hub_models()] if AVAILABLE else hub_models()


@harness.hookimpl
def harness_suites() -> list[Suite]:
    names = [spec.name for spec in builtin_models()] if AVAILABLE else []
    return [
        Suite(
            SUITE,
            models=tuple(names),
            description="Hugging Face transformers: BERT, GPT-2, Llama, T5, ViT, ConvNeXt "
            "(random weights, small sizes)",
            requires=INSTALL,
            source=__name__,
        )
    ]
