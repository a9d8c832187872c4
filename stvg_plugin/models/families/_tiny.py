"""Shared pieces of the families' tiny random checkpoints (tests and ``prompted_<family>_tiny`` presets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A ChatML template in the shape of the families' own (Qwen2.5-VL, Qwen3-VL, InternVL-hf and
# LLaVA-OneVision all use <|im_start|>role ... <|im_end|> turns): text items verbatim, each image item
# as the family's placeholder, in message order. ``{system}`` is the default system turn, if any.
# ``{video}`` renders a video item (families whose released template has one: the Qwen ones), so a
# stock client that sends the video whole (lmms-eval's ``qwen2_5_vl`` / ``qwen3_vl``) runs on the tiny model.
_CHATML = (
    "{{% for message in messages %}}"
    "{{% if loop.first and message['role'] != 'system' %}}{system}{{% endif %}}"
    "<|im_start|>{{{{ message['role'] }}}}\n"
    "{{% if message['content'] is string %}}{{{{ message['content'] }}}}"
    "{{% else %}}{{% for item in message['content'] %}}"
    "{{% if item['type'] == 'image' %}}{image}{video}{{% elif item['type'] == 'text' %}}{{{{ item['text'] }}}}{{% endif %}}"
    "{{% endfor %}}{{% endif %}}<|im_end|>\n"
    "{{% endfor %}}"
    "{{% if add_generation_prompt %}}<|im_start|>assistant\n{{% endif %}}"
)
QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def chatml_template(image_placeholder: str, system: str = "", video_placeholder: str | None = None) -> str:
    video = "" if video_placeholder is None else f"{{% elif item['type'] == 'video' %}}{video_placeholder}"
    return _CHATML.format(image=image_placeholder, system=system, video=video)


def byte_tokenizer(specials: list[str], named: dict[str, str] | None = None, chat_template: str | None = None) -> Any:
    """Byte-level tokenizer (every string encodable, random ids decode to text) + the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    kwargs: dict[str, Any] = {"extra_special_tokens": named} if named else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=specials, **kwargs)
    if chat_template:
        tok.chat_template = chat_template
    return tok


def vocab_size(tok: Any) -> int:
    return ((len(tok) + 63) // 64) * 64


def qwen2_text_config(tok: Any) -> dict[str, Any]:
    """A 2-layer Qwen2 language model; a wide init keeps greedy choices apart, so cached and full passes agree."""
    return {"model_type": "qwen2", "vocab_size": vocab_size(tok), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "initializer_range": 0.2,
            "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tok.convert_tokens_to_ids("<|endoftext|>")}


def save_tiny(folder: str | Path, model: Any, tok: Any, image_processor: Any) -> Path:
    """Save model (safetensors), tokenizer and image processor the way a hub checkpoint is laid out."""
    from stvg_plugin.models.prompted import _END_MARKERS, _VISION_MARKERS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tok.get_vocab()
    # The generation defaults the in-process backend passes to generate() (stop at either end marker, never
    # emit a vision placeholder), saved with the checkpoint so that a server that only reads
    # generation_config.json (`transformers serve`, vLLM) decodes a random model's answer the same way.
    model.generation_config.eos_token_id = [vocab[t] for t in _END_MARKERS if t in vocab]
    model.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.suppress_tokens = [vocab[t] for t in _VISION_MARKERS if t in vocab] or None
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder
