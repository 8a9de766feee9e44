"""Prompt layouts: which tokens the live cache holds for a document and a cursor.

prefix-only: `[start] [context] prefix`
FIM:         `[start] [context] <pre> prefix <suf> suffix <mid>`

The cache's end is always the decode point. The token under (or just before) the
cursor is left out of `prefix`; its text up to the cursor is returned as `heal`, and
token healing makes the first decoded token restore it. Backing up over the last token
even at a token boundary matters most at line starts, where byte-level BPE merges the
newline with the next line's indentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from completion.tokens import TokenizedText


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix: str
    suffix: str
    middle: str


FIM_TEMPLATES = (
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTemplate("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>"),
)


@dataclass(frozen=True)
class FimIds:
    template: FimTemplate
    prefix: int
    suffix: int
    middle: int


def detect_fim(tokenizer: PreTrainedTokenizerBase) -> FimIds | None:
    """The first known FIM template whose three markers are single tokens of this vocabulary."""
    vocab = tokenizer.get_vocab()
    for template in FIM_TEMPLATES:
        marks = (template.prefix, template.suffix, template.middle)
        if all(m in vocab for m in marks):
            return FimIds(template, *(vocab[m] for m in marks))
    return None


def start_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """The document-start token at position 0: `<|endoftext|>` for models pretrained on files
    separated by it, else BOS, else EOS. It also keeps every prompt non-empty."""
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise ValueError("tokenizer has no <|endoftext|>, BOS or EOS token to start a document with")


@dataclass(frozen=True)
class Layout:
    tokens: list[int]  # the whole prompt; the decode point is after the last one
    heal: str  # document text between the end of `tokens`' prefix part and the cursor
    prefix_base: int  # layout index of document token `window_start`
    window_start: int  # first document token in the prompt
    cursor_token: int  # document index of the healed token (prefix is [window_start, cursor_token))
    suffix_base: int  # layout index of document token `suffix_start` (FIM only, else -1)
    suffix_start: int  # first document token of the suffix (FIM only)
    suffix_end: int  # one past the last document token of the suffix (FIM only)


def healed_token(doc: TokenizedText, cursor: int) -> int:
    """Index of the token that token healing re-decodes: the last one starting before the cursor.

    Byte-level BPE can split one character over several tokens that share a start offset;
    we back up to the first of them so the healed text is whole characters.
    """
    k = doc.token_index_at(cursor) - 1
    if k < 0:
        return 0
    while k > 0 and doc.offsets[k - 1] == doc.offsets[k]:
        k -= 1
    return k


def build_layout(
    doc: TokenizedText,
    cursor: int,
    *,
    head: list[int],
    fim: FimIds | None,
    window_start: int,
    suffix_tokens: int,
) -> Layout:
    """Lay out `head` (start token + cross-file context), the document prefix and (FIM) suffix."""
    k = healed_token(doc, cursor)
    w = min(window_start, k)
    heal = doc.text[doc.offsets[k] : cursor] if k < len(doc.ids) else ""
    tokens = list(head)
    if fim is not None:
        tokens.append(fim.prefix)
    prefix_base = len(tokens)
    tokens += doc.ids[w:k]
    if fim is None:
        return Layout(tokens, heal, prefix_base, w, k, -1, k, k)
    tokens.append(fim.suffix)
    # Tokens that start at or after the cursor; the rest of a token the cursor splits is
    # left out (the model usually re-creates it, and FIM stop rules trim any overlap).
    suffix_start = doc.token_index_at(cursor)
    suffix_end = min(len(doc.ids), suffix_start + suffix_tokens)
    suffix_base = len(tokens)
    tokens += doc.ids[suffix_start:suffix_end]
    tokens.append(fim.middle)
    return Layout(tokens, heal, prefix_base, w, k, suffix_base, suffix_start, suffix_end)
