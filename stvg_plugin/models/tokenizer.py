"""A character-level tokenizer built in code, so tiny models need nothing from a model hub.

Why characters: every query (any English word) and every number the answer templates write are
representable without an ``[UNK]``, the build is fully deterministic (no BPE training), and the
vocabulary stays ~110 ids so a tiny LM's embedding and output layers cost almost nothing.
Chat-style markers (``<|im_start|>`` ...) are special tokens, so the same prompt templates work
for the tiny model and for real Qwen2-based checkpoints.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, EOS = "<|endoftext|>", "<unk>", "<|im_end|>"
SPECIAL_TOKENS = (
    PAD,
    UNK,
    "<|im_start|>",
    EOS,
    "<image>",
    "<video>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<st_query>",
)
CHARACTERS = tuple(string.ascii_letters + string.digits + string.punctuation + " \n")


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Special tokens first (ids 0..9), then printable ASCII characters, one id each."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        additional_special_tokens=list(SPECIAL_TOKENS[2:3]) + list(SPECIAL_TOKENS[4:]),
    )
    return tok
