"""Tokenizers built in code, so tiny models need nothing from a model hub.

* characters (``build_char_tokenizer``): every query (any English word) and every number the answer
  templates write are representable without an ``[UNK]``, the build is fully deterministic (no BPE
  training), and the vocabulary stays ~110 ids so a tiny LM's embedding and output layers cost
  almost nothing;
* words + characters (``build_word_tokenizer``): the same, plus one id for each of ~300 common
  English words (:data:`COMMON_WORDS`), as a real BPE vocabulary has for frequent words; any other
  word falls back to its characters. A from-scratch tiny LM must otherwise learn to spell "red" out
  of ``r``, ``e``, ``d`` before the space decoder can match it to a red patch, which dominated what
  the tiny model failed at on CPU (examples/learnability.md).

Chat-style markers (``<|im_start|>`` ...) are special tokens, so the same prompt templates work
for the tiny model and for real Qwen2-based checkpoints.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

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

#: whole-word ids of ``build_word_tokenizer``: prompt words, and words common in referring expressions
#: (people, animals, vehicles, things, colours, shapes, sizes, places, motions, relations)
COMMON_WORDS = tuple(
    dict.fromkeys(
        """
        Find When Frame What Where Which Who The A An
        find when frame what where which who is it are was be visible at from to and or of in on
        the a an s seconds second time span box boxes answer video image frames
        man woman person people boy girl child kid baby player men women guy lady adult
        dog cat horse bird cow sheep elephant bear zebra giraffe animal fish duck
        car bus truck bike bicycle motorcycle train boat plane vehicle
        ball bag box cup bottle chair table door window phone book hat shirt coat jacket dress
        shoe shoes glasses umbrella toy food tree grass road street room wall floor bed sofa
        red green blue yellow black white orange purple pink brown gray grey
        circle square triangle star rectangle shape object objects thing
        small large big little tall short long young old
        left right up down top bottom front back middle center centre side corner near far
        moving moves move walks walking runs running sits sitting stands standing holds holding
        turns turning jumps jumping goes going comes coming enters leaves stops stays still
        picks puts opens closes looks looking talks talking rides riding carries carrying throws
        catches pushes pulls eats drinks waves wearing wears with without beside behind above
        below under over next into out away toward towards across around first then after
        before while who that which his her their its he she they him them this these those
        one two three other another
        """.split()
    )
)


def _fast_tokenizer(core: Tokenizer) -> PreTrainedTokenizerFast:
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        additional_special_tokens=list(SPECIAL_TOKENS[2:3]) + list(SPECIAL_TOKENS[4:]),
    )


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Special tokens first (ids 0..9), then printable ASCII characters, one id each."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return _fast_tokenizer(core)


def build_word_tokenizer(words: Iterable[str] = COMMON_WORDS) -> PreTrainedTokenizerFast:
    """Ids of :func:`build_char_tokenizer` (same order), then one id per word of ``words``.

    A run of letters that is a known word becomes one token; any other run becomes its characters
    (BPE with no merges and ``ignore_merges``: a piece found in the vocabulary is kept whole), so no
    text maps to ``[UNK]``. Digits and punctuation stay single characters.
    """
    base = SPECIAL_TOKENS + CHARACTERS
    extra = [w for w in dict.fromkeys(words) if len(w) > 1 and w not in base]
    vocab = {tok: i for i, tok in enumerate(base + tuple(extra))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, ignore_merges=True))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[A-Za-z]+|."), behavior="isolated")
    return _fast_tokenizer(core)


TINY_TOKENIZERS = {"chars": build_char_tokenizer, "words": build_word_tokenizer}


def build_tiny_tokenizer(kind: str = "chars") -> PreTrainedTokenizerFast:
    """The tokenizer a tiny preset is built with (``tokenizer: chars | words`` in the model spec)."""
    try:
        return TINY_TOKENIZERS[kind]()
    except KeyError:
        raise ValueError(f"unknown tiny tokenizer {kind!r}; known: {sorted(TINY_TOKENIZERS)}") from None
