"""Tokenizers behind one small interface, for measuring and building task prompts.

Lengths of evaluation samples are always measured in the evaluated model's tokenizer
(RULER, arXiv 2404.06654, section 3). The library needs only four things from a tokenizer:
``encode(text) -> list[int]`` (no special tokens added), ``decode(ids) -> str``,
``vocab_size`` and the ids of the BOS / EOS tokens where they exist.

- :class:`ByteTokenizer`: UTF-8 bytes 0-255 plus PAD / BOS / EOS; needs no files.
- :class:`SentencePieceTokenizer`: a SentencePiece ``.model`` file, by default one of the
  models that ship inside the ``mistral-common`` package (``mistral-v1``: 32,000 pieces,
  ``mistral-v3``: 32,768 pieces). Needs the ``sentencepiece`` package.
- :class:`HFTokenizerAdapter`: wraps any Hugging Face tokenizer object by duck typing
  (``encode(text, add_special_tokens=False)``, ``decode``); transformers is never imported.
- :func:`load_tokenizer`: a name, a ``.model`` path, one of ours, or a foreign object.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "SentencePieceTokenizer",
    "HFTokenizerAdapter",
    "load_tokenizer",
    "SENTENCEPIECE_MODELS",
    "mistral_common_model_path",
]


@runtime_checkable
class Tokenizer(Protocol):
    """What the library needs from a tokenizer."""

    name: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def bos_id(self) -> int | None: ...

    @property
    def eos_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; special tokens are dropped."""
        ...


class ByteTokenizer:
    """UTF-8 byte-level tokenizer: ids 0-255 are bytes, then PAD=256, BOS=257, EOS=258."""

    name = "byte"
    pad_id = 256

    @property
    def vocab_size(self) -> int:
        return 259

    @property
    def bos_id(self) -> int:
        return 257

    @property
    def eos_id(self) -> int:
        return 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


# Short names for the SentencePiece models bundled in mistral-common (file names in its data/).
SENTENCEPIECE_MODELS: dict[str, str] = {
    "mistral-v1": "tokenizer.model.v1",
    "mistral-v2": "mistral_instruct_tokenizer_240216.model.v2",
    "mistral-v3": "mistral_instruct_tokenizer_240323.model.v3",
    "mistral-v7": "mistral_instruct_tokenizer_241114.model.v7",
}


def mistral_common_model_path(name: str = "mistral-v1") -> Path:
    """Path of a SentencePiece model shipped inside the installed ``mistral-common`` package."""
    if name not in SENTENCEPIECE_MODELS:
        raise ValueError(
            f"unknown SentencePiece model {name!r}; known: {sorted(SENTENCEPIECE_MODELS)} "
            "(or pass a path to a .model file)"
        )
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the SentencePiece model {name!r} ships in the 'mistral-common' package, which is "
            "not installed: pip install 'mistral-common' sentencepiece (or longpos[text])"
        )
    path = Path(spec.origin).parent / "data" / SENTENCEPIECE_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: this mistral-common version does not ship {name!r}; "
            f"install mistral-common>=1.5 or pass a .model path"
        )
    return path


class SentencePieceTokenizer:
    """A SentencePiece model; by default mistral-common's ``tokenizer.model.v1`` (32K)."""

    def __init__(self, model: str | Path = "mistral-v1") -> None:
        try:
            import sentencepiece as spm
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "SentencePieceTokenizer needs the 'sentencepiece' package: "
                "pip install sentencepiece (the models themselves ship in 'mistral-common')"
            ) from e
        s = str(model)
        path = mistral_common_model_path(s) if s in SENTENCEPIECE_MODELS else Path(s)
        if not path.is_file():
            raise FileNotFoundError(
                f"SentencePiece model file {path} not found; pass one of "
                f"{sorted(SENTENCEPIECE_MODELS)} or an existing .model path"
            )
        self.path = path
        self.name = s if s in SENTENCEPIECE_MODELS else f"sentencepiece:{path.name}"
        self._sp = spm.SentencePieceProcessor(model_file=str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._sp.vocab_size())

    @property
    def bos_id(self) -> int | None:
        i = int(self._sp.bos_id())
        return i if i >= 0 else None

    @property
    def eos_id(self) -> int | None:
        i = int(self._sp.eos_id())
        return i if i >= 0 else None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        n = self.vocab_size
        return str(self._sp.decode([int(i) for i in ids if 0 <= int(i) < n]))

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({self.name!r})"


class HFTokenizerAdapter:
    """Wraps a Hugging Face tokenizer (or anything with the same methods) by duck typing.

    Uses ``obj.encode(text, add_special_tokens=False)`` and
    ``obj.decode(ids, skip_special_tokens=True)``; ``len(obj)`` (or ``obj.vocab_size``) and
    ``bos_token_id`` / ``eos_token_id`` when present.
    """

    def __init__(self, obj: Any) -> None:
        if not (callable(getattr(obj, "encode", None)) and callable(getattr(obj, "decode", None))):
            raise TypeError(
                f"cannot use {type(obj).__name__} as a tokenizer: it needs encode(text) and "
                "decode(ids) methods (a Hugging Face tokenizer, or a longpos Tokenizer)"
            )
        self._tok = obj
        self.name = str(getattr(obj, "name_or_path", "") or type(obj).__name__)

    @property
    def vocab_size(self) -> int:
        try:
            return int(len(self._tok))
        except TypeError:
            return int(self._tok.vocab_size)

    @property
    def bos_id(self) -> int | None:
        return getattr(self._tok, "bos_token_id", None)

    @property
    def eos_id(self) -> int | None:
        return getattr(self._tok, "eos_token_id", None)

    def encode(self, text: str) -> list[int]:
        try:
            ids = self._tok.encode(text, add_special_tokens=False)
        except TypeError:
            ids = self._tok.encode(text)
        return [int(i) for i in ids]

    def decode(self, ids: list[int]) -> str:
        try:
            return str(self._tok.decode(list(ids), skip_special_tokens=True))
        except TypeError:
            return str(self._tok.decode(list(ids)))

    def __repr__(self) -> str:
        return f"HFTokenizerAdapter({self.name!r})"


def load_tokenizer(name_or_obj: Any = "byte") -> Tokenizer:
    """Return a :class:`Tokenizer`.

    ``"byte"`` -> :class:`ByteTokenizer`; ``"mistral-v1"`` / ``"mistral-v3"`` / ... or a
    ``*.model`` path -> :class:`SentencePieceTokenizer`; an object that already is one of the
    library's tokenizers is returned as is; any other object with ``encode``/``decode`` is
    wrapped in :class:`HFTokenizerAdapter`.
    """
    if isinstance(name_or_obj, ByteTokenizer | SentencePieceTokenizer | HFTokenizerAdapter):
        return name_or_obj
    if isinstance(name_or_obj, str | Path):
        s = str(name_or_obj)
        if s == "byte":
            return ByteTokenizer()
        if s in SENTENCEPIECE_MODELS or s.endswith(".model") or ".model." in Path(s).name:
            return SentencePieceTokenizer(s)
        raise ValueError(
            f"unknown tokenizer {s!r}; use 'byte', one of {sorted(SENTENCEPIECE_MODELS)}, a "
            "SentencePiece .model path, or pass a tokenizer object (e.g. from transformers)"
        )
    if all(
        hasattr(name_or_obj, a) for a in ("encode", "decode", "vocab_size", "bos_id", "eos_id")
    ) and not hasattr(name_or_obj, "bos_token_id"):
        return name_or_obj  # already speaks our interface
    return HFTokenizerAdapter(name_or_obj)
