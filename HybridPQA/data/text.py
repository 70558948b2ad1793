"""The paper's text options: source insertion, normalisation, attribute flattening.

hetPQA attribute evidence is pseudo-JSON such as
    item_weight:  { unit:pounds, normalized_value:{ unit:pounds, value:13. }, value:13. }
which `flatten_attribute` turns into "item weight : 13. pounds".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from flatten_json import flatten

_UNIT_KEYS = ({"unit", "value"}, {"currency", "value"})


def ascii_fold(text: str) -> str:
    """NFKD, then drop what is not ASCII (the original code's question cleanup)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip()


def normalize_text(text: str, numbers: bool = False) -> str:
    """The paper's context cleanup: quotes, dashes, inches/feet/pounds, dimensions.

    `numbers=True` also replaces every number by the word "number", as the paper did.
    """
    text = re.sub(r"[\u201c\u201d\u201e\u2033]", '"', text)
    text = re.sub(r"[\u2018\u2019\u201a\u2032]", "'", text)
    text = text.replace("\u00d7", "x")
    text = re.sub(r"[\u2013\u2014]", "-", text)
    text = re.sub(r"(\d)\.(\s*})", r"\1.0\2", text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*\"", r"\1 inches ", text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*'(?!\w)", r"\1 feet ", text)
    text = text.replace('"', "")
    text = re.sub(r"(\d+(?:\.\d+)?)\s*lbs?\b", r"\1 pound", text, flags=re.I)
    text = ascii_fold(text)
    num = r"(\d+(?:\.\d+)?)"
    text = re.sub(rf"\b{num}\s*x\s*{num}\s*x\s*{num}\b", r"length \1 x width \2 x height \3", text)
    text = re.sub(rf"\b{num}\s*x\s*{num}\b", r"length \1 x width \2", text)
    if numbers:
        text = re.sub(r"\d+(?:[.,]\d+)*", "number", text)
    return re.sub(r"\s+", " ", text).strip()


class _Parser:
    """Recursive descent over the attribute pseudo-JSON: {k:v, ...}, [v, ...], "str" or bare words."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        self._skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise ValueError(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def value(self):
        char = self._peek()
        if char == "{":
            self.pos += 1
            out = {}
            while self._peek() != "}":
                key = self._bare(":")
                self._expect(":")
                out[key] = self.value()
                if self._peek() == ",":
                    self.pos += 1
            self.pos += 1
            return out
        if char == "[":
            self.pos += 1
            items = []
            while self._peek() != "]":
                items.append(self.value())
                if self._peek() == ",":
                    self.pos += 1
            self.pos += 1
            return items
        if char == '"':
            end = self.text.index('"', self.pos + 1)
            out, self.pos = self.text[self.pos + 1:end], end + 1
            return out
        return self._bare(",}];")

    def _bare(self, stops: str) -> str:
        self._skip()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        if self.pos == start:
            raise ValueError(f"empty token at {start}")
        return self.text[start:self.pos].strip()

    def attribute(self) -> tuple[str, object]:
        """`key: value; value; ...` -> (key, value or list of values)."""
        key = self._bare(":")
        self._expect(":")
        values = [self.value()]
        while self._peek() == ";":
            self.pos += 1
            values.append(self.value())
        if self._peek():
            raise ValueError(f"trailing text at {self.pos}")
        return key, values[0] if len(values) == 1 else values


def _simplify(value):
    """Drop normalized_value, collapse {unit, value} to "value unit", lists of scalars to "a, b"."""
    if isinstance(value, dict):
        value = {k: _simplify(v) for k, v in value.items() if k != "normalized_value"}
        if set(value) in _UNIT_KEYS:
            return f"{value['value']} {value.get('unit', value.get('currency'))}"
        if set(value) == {"value"}:
            return value["value"]
        return value
    if isinstance(value, list):
        items = [_simplify(v) for v in value]
        if all(isinstance(v, str) for v in items):
            return ", ".join(items)
        return items
    return value


def flatten_attribute(text: str) -> str:
    """Attribute pseudo-JSON -> "key : value, key sub : value" via flatten-json; unparsable text is kept."""
    try:
        key, value = _Parser(text).attribute()
    except (ValueError, IndexError):
        return text
    flat = flatten({key: _simplify(value)}, separator=" ")
    parts = [f"{k} : {v}" for k, v in flat.items() if v not in ("", None, [], {})]
    return re.sub(r"\s+", " ", ", ".join(parts).replace("_", " ")).strip()


def context_text(text: str, source: str | None, *, insert_source: bool, normalize: bool,
                 normalize_numbers: bool, flatten_attributes: bool) -> str:
    """The text a context encoder sees, with the paper's options applied in the paper's order."""
    if normalize:
        text = normalize_text(text, numbers=normalize_numbers)
    if flatten_attributes and source == "attribute":
        text = flatten_attribute(text)
    if insert_source and source:
        text = f"{source} {text}"
    return text


def question_text(text: str, *, normalize: bool, normalize_numbers: bool) -> str:
    """Under NORMALIZE questions are only ASCII-folded (as in the paper); numbers when that option is on."""
    text = ascii_fold(text) if normalize else text
    return re.sub(r"\d+(?:[.,]\d+)*", "number", text) if normalize_numbers else text


@dataclass(frozen=True)
class TextOptions:
    """The paper's text options (RETRIEVER.DATA), applied alike in training, evaluation and search."""

    insert_source: bool = False
    normalize: bool = False
    normalize_numbers: bool = False
    flatten_attributes: bool = False

    def query(self, text: str) -> str:
        return question_text(text, normalize=self.normalize, normalize_numbers=self.normalize_numbers)

    def context(self, text: str, source: str | None = None) -> str:
        return context_text(text, source, insert_source=self.insert_source, normalize=self.normalize,
                            normalize_numbers=self.normalize_numbers, flatten_attributes=self.flatten_attributes)

    def texts(self, side: str, texts: list[str], sources: list[str | None] | None = None) -> list[str]:
        """The one place the options are applied: to a split's texts (data.build_split) and to a
        user's (the encoder's `encode_raw`). `side`: "query" or "context"; `sources`: each
        context's evidence source (INSERT_SOURCE, FLATTEN_ATTRIBUTE)."""
        if side == "query":
            return [self.query(t) for t in texts]
        return [self.context(t, s) for t, s in zip(texts, sources or [None] * len(texts))]
