"""longpos.data: tokenizers, offline word lists and the offline English corpus."""

from longpos.data.corpus import corpus_fingerprint, corpus_sentences, english_corpus
from longpos.data.tokenizers import (
    ByteTokenizer,
    HFTokenizerAdapter,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "ByteTokenizer",
    "HFTokenizerAdapter",
    "SentencePieceTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "corpus_fingerprint",
    "corpus_sentences",
    "english_corpus",
]
