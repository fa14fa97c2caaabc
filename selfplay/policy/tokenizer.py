"""Tokenizers of the policy: a character-level one for the tiny model, or a local HF model's own.

The character tokenizer gives every printable ASCII character (and newline) its own token, so a
game move such as ``"5"`` is exactly one token and its prior is one entry of the next-token
distribution. It is built with the ``tokenizers`` library and wrapped as a transformers fast
tokenizer, so ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` work like for any HF model.

Encoding conventions shared by the engine and the learner (keep them in this one place):
- a prompt / state is encoded WITH the tokenizer's special tokens (``<bos>`` first for ours);
- a continuation / action is encoded WITHOUT special tokens and appended after the prompt's ids.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0..3, in this order
CHARACTERS = "".join(chr(c) for c in range(32, 127)) + "\n"  # printable ASCII + newline


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer: 4 special tokens + 96 characters (vocab 100)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character is its own pre-token (a class that matches a newline too).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # join characters without the WordLevel default spaces
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="right",
    )


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """A local HF directory's own tokenizer (never reaches the network)."""
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.padding_side = "right"  # the engine and the learner pad on the right
    return tok


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a prompt or state, with the tokenizer's own special tokens (e.g. <bos>)."""
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def encode_continuation(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a continuation or action, to be appended after a prompt's ids."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def is_encodable(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> bool:
    """False for an empty encoding or one that fell back to the unknown token."""
    unk = tokenizer.unk_token_id
    return len(ids) > 0 and (unk is None or unk not in ids)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """An id to fill padding with (masked out everywhere; Qwen-style tokenizers may lack <pad>)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


__all__ = [
    "CHARACTERS",
    "SPECIAL_TOKENS",
    "build_char_tokenizer",
    "encode_continuation",
    "encode_prompt",
    "is_encodable",
    "load_tokenizer",
    "pad_token_id",
]
