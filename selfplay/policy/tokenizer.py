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

import weakref

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


def encode_prompts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """``encode_prompt`` of many texts in one call (one pass through the tokenizer's Python
    wrapper, which costs tens of microseconds a call: more than the text itself)."""
    return _encode_many(tokenizer, texts, special=True)


def encode_continuations(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """``encode_continuation`` of many texts in one call."""
    return _encode_many(tokenizer, texts, special=False)


def _encode_many(tokenizer: PreTrainedTokenizerBase, texts: list[str], special: bool):
    table = _character_table(tokenizer)
    if table is None:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]]
    out = [None if table.names_a_special(t) else table.encode(t, special) for t in texts]
    rest = [i for i, ids in enumerate(out) if ids is None]
    if rest:  # a text spelling a special token ("<eos>"): the tokenizer reads it as that token
        encoded = tokenizer([texts[i] for i in rest], add_special_tokens=special)["input_ids"]
        for i, ids in zip(rest, encoded):
            out[i] = list(ids)
    return out


class _CharacterTable:
    """Encoding by a dict lookup per character, for a tokenizer whose every token is one
    character (the tiny model's): ten times faster than the tokenizers library on game states,
    which a search encodes by the thousand."""

    def __init__(self, ids: dict[str, int], unk: int, prefix: list[int], suffix: list[int],
                 specials: tuple[str, ...]):
        self.ids, self.unk, self.prefix, self.suffix = ids, unk, prefix, suffix
        self.specials = specials

    def names_a_special(self, text: str) -> bool:
        return any(sp in text for sp in self.specials)

    def encode(self, text: str, special: bool) -> list[int]:
        get, unk = self.ids.get, self.unk
        body = [get(c, unk) for c in text]
        return self.prefix + body + self.suffix if special else body


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _character_table(tokenizer: PreTrainedTokenizerBase) -> _CharacterTable | None:
    """The tokenizer's ``_CharacterTable``, or None unless encoding by table gives exactly what
    the tokenizer gives: every non-special token one character, an unknown token, and a probe of
    every character (and two outside the vocabulary) encoded the same both ways."""
    try:
        return _TABLES[tokenizer]
    except (KeyError, TypeError):
        pass
    table = None
    vocab = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens)
    chars = {tok: i for tok, i in vocab.items() if tok not in specials}
    unk = tokenizer.unk_token_id
    if chars and unk is not None and all(len(tok) == 1 for tok in chars):
        probe = "".join(sorted(chars)) + "\té" + "".join(sorted(chars))[::-1]
        plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        candidate = _CharacterTable(chars, unk, [], [], tuple(specials))
        if plain == candidate.encode(probe, special=False) and plain:
            at = next((k for k in range(len(full) - len(plain) + 1)
                       if full[k : k + len(plain)] == plain), None)
            if at is not None:
                table = _CharacterTable(chars, unk, full[:at], full[at + len(plain) :],
                                        tuple(specials))
                if table.encode("", special=True) != list(
                        tokenizer("", add_special_tokens=True)["input_ids"]):
                    table = None
    try:
        _TABLES[tokenizer] = table
    except TypeError:
        pass
    return table


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
    "encode_continuations",
    "encode_prompt",
    "encode_prompts",
    "is_encodable",
    "load_tokenizer",
    "pad_token_id",
]
