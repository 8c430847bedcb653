import pytest

from longpos.data.tokenizers import (
    ByteTokenizer,
    HFTokenizerAdapter,
    SentencePieceTokenizer,
    load_tokenizer,
    mistral_common_model_path,
)


def test_byte_tokenizer_roundtrip_and_specials():
    tok = ByteTokenizer()
    text = "Grüße, 世界!\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids + [tok.eos_id, tok.bos_id]) == text
    assert tok.vocab_size == 259 and {tok.bos_id, tok.eos_id, tok.pad_id} == {256, 257, 258}


def test_sentencepiece_mistral_v1():
    pytest.importorskip("sentencepiece")
    pytest.importorskip("mistral_common")
    tok = load_tokenizer("mistral-v1")
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.vocab_size == 32000 and tok.bos_id == 1 and tok.eos_id == 2
    ids = tok.encode("The grass is green.")
    assert 3 <= len(ids) <= 8 and tok.bos_id not in ids
    assert tok.decode(ids) == "The grass is green."
    assert mistral_common_model_path("mistral-v1").name == "tokenizer.model.v1"


def test_unknown_names_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'gpt9'"):
        load_tokenizer("gpt9")
    with pytest.raises(ValueError, match="known"):
        mistral_common_model_path("mistral-v99")
    pytest.importorskip("sentencepiece")
    with pytest.raises(FileNotFoundError, match="not found"):
        SentencePieceTokenizer(tmp_path / "missing.model")


class _FakeHF:
    """Duck-typed stand-in for a Hugging Face tokenizer (word-level)."""

    bos_token_id = 1
    eos_token_id = 2
    name_or_path = "fake/words"

    def __init__(self):
        self.vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}

    def __len__(self):
        return len(self.vocab)

    def encode(self, text, add_special_tokens=True):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return [1, *ids] if add_special_tokens else ids

    def decode(self, ids, skip_special_tokens=False):
        inv = {v: k for k, v in self.vocab.items()}
        return " ".join(inv[i] for i in ids if not (skip_special_tokens and i < 3))


def test_hf_adapter_duck_typing():
    fake = _FakeHF()
    tok = load_tokenizer(fake)
    assert isinstance(tok, HFTokenizerAdapter)
    ids = tok.encode("a b a")
    assert ids == [3, 4, 3]  # no BOS added
    assert tok.decode(ids + [2]) == "a b a"
    assert tok.vocab_size == 5 and tok.bos_id == 1 and tok.eos_id == 2
    assert tok.name == "fake/words"
    with pytest.raises(TypeError, match="encode"):
        HFTokenizerAdapter(object())
    assert load_tokenizer(tok) is tok


def test_task_generation_with_a_duck_typed_tokenizer():
    from longpos.tasks import generate_sample

    fake = _FakeHF()
    s = generate_sample("niah_single_1", 400, tokenizer=fake, seed=0, tokens_to_generate=8)
    assert s.length <= 400 and s.length >= 380
    assert s.prompt_ids == fake.encode(s.prompt, add_special_tokens=False)
    assert s.tokenizer == "fake/words"
