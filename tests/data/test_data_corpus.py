import random

from longpos.data.corpus import (
    corpus_fingerprint,
    corpus_sentences,
    english_corpus,
    split_sentences,
)
from longpos.data.words import adjectives, common_vocabulary, nouns, random_adjective_noun


def test_corpus_is_deterministic_english_prose():
    text = english_corpus()
    assert len(text.split()) > 15_000
    assert english_corpus() == text and corpus_fingerprint() == corpus_fingerprint()
    sents = corpus_sentences()
    assert len(sents) > 500
    for s in sents[:200]:
        assert s[0].isupper() or s[0] in "\"'(", s
        assert "::=" not in s and "****" not in s and "====" not in s
    assert " the " in text and " is " in text


def test_split_sentences():
    assert split_sentences("It rains. Then it stops! Does it? yes.") == [
        "It rains.",
        "Then it stops!",
        "Does it? yes.",
    ]


def test_word_lists_and_keys():
    assert len(nouns()) > 6000 and len(adjectives()) > 800
    assert list(nouns()) == sorted(nouns())
    assert len(common_vocabulary()) > 8000
    a, b = random.Random(3), random.Random(3)
    keys = [random_adjective_noun(a) for _ in range(20)]
    assert keys == [random_adjective_noun(b) for _ in range(20)]
    adj, nn = set(adjectives()), set(nouns())
    for k in keys:
        x, y = k.split("-", 1)
        assert x in adj and y in nn
