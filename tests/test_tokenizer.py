"""The character tokenizer: one token per character, HF round trip, unknown characters."""

from transformers import AutoTokenizer

from selfplay.policy.tokenizer import (
    CHARACTERS,
    build_char_tokenizer,
    encode_continuation,
    encode_prompt,
    is_encodable,
)


def test_vocab_and_single_char_tokens():
    tok = build_char_tokenizer()
    assert len(tok) == 100
    for ch in "0123456789" + CHARACTERS:
        ids = encode_continuation(tok, ch)
        assert len(ids) == 1 and is_encodable(tok, ids), ch
    assert encode_prompt(tok, "5")[0] == tok.bos_token_id


def test_decode_round_trip_keeps_spaces_and_newlines():
    tok = build_char_tokenizer()
    text = "x o .\n1 2  3\tno"  # tab is outside the vocabulary
    ids = encode_prompt(tok, text)
    assert tok.decode(ids, skip_special_tokens=True) == text.replace("\t", "")
    assert not is_encodable(tok, encode_continuation(tok, "é"))
    assert not is_encodable(tok, encode_continuation(tok, ""))


def test_save_and_load_with_transformers(tmp_path):
    tok = build_char_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "move: 7\nboard: x.o"
    assert encode_prompt(loaded, text) == encode_prompt(tok, text)
    assert loaded.decode(encode_prompt(loaded, text), skip_special_tokens=True) == text
    assert (loaded.pad_token_id, loaded.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)


def test_batch_encoding_equals_the_tokenizer_call_by_call():
    """encode_prompts/encode_continuations take a per-character table for the character
    tokenizer; it must encode exactly as the tokenizer does, hostile text included (special
    token names, characters outside the vocabulary, empty strings)."""
    import random

    from selfplay.policy.tokenizer import _character_table, encode_continuations, encode_prompts

    tok = build_char_tokenizer()
    assert _character_table(tok) is not None  # the fast path is taken
    rng = random.Random(0)
    alphabet = CHARACTERS + "\té€\x00"
    texts = ["", "<bos>", "a<eos>b", "<pad<unk>>", "x" * 500]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(200)]
    assert encode_prompts(tok, texts) == [encode_prompt(tok, t) for t in texts]
    assert encode_continuations(tok, texts) == [encode_continuation(tok, t) for t in texts]


def test_no_table_for_a_tokenizer_with_multi_character_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from selfplay.policy.tokenizer import _character_table, encode_prompts

    inner = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "ab": 1, "a": 2, "b": 3},
                                       unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="<unk>")
    assert _character_table(tok) is None
    assert encode_prompts(tok, ["ab a b", "ba"]) == [[1, 2, 3], [0]]
