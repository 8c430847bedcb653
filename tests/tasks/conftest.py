import pytest


@pytest.fixture(scope="session")
def sp_tok():
    pytest.importorskip("sentencepiece")
    pytest.importorskip("mistral_common")
    from longpos.data.tokenizers import load_tokenizer

    return load_tokenizer("mistral-v1")
