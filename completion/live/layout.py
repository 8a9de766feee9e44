"""Prompt layouts: which tokens the live cache holds for a document and a cursor.

document:    `[start] [context] text`                               (prefix-only models, PIE)
prompt:      `[start] [context] prefix`                             (the baselines: the cache ends at the caret)
FIM:         `[start] [context] <pre> prefix <suf> suffix <mid>`

A document layout holds the whole (windowed) text, so it does not depend on the caret:
the prompt is its first `decode_at` tokens, and decoding reads only those. In the other
two the prompt is the whole layout. The token under (or just before) the cursor is left
out of the prompt; its text up to the cursor is returned as `heal`, and token healing
makes the first decoded token restore it. Backing up over the last token even at a token
boundary matters most at line starts, where byte-level BPE merges the newline with the
next line's indentation.

Every slot also carries an identity (`uids`): a document token's survives edits, so a
relayout (the caret or the window moved) can find where each entry's KV already is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from completion.live.tokens import TokenizedText


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


# The repository markers of models pretrained on StarCoder2-style data: `<repo_name>repo<file_sep>path\ncode…`.
REPO_MARKERS = ("<repo_name>", "<file_sep>")
_MARKER_SPLIT = re.compile("(" + "|".join(map(re.escape, REPO_MARKERS)) + ")")


def repo_markers(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The repository markers that are single tokens of this vocabulary (both, or none)."""
    vocab = tokenizer.get_vocab()
    return {m: vocab[m] for m in REPO_MARKERS} if all(m in vocab for m in REPO_MARKERS) else {}


def context_tokens(tokenizer: PreTrainedTokenizerBase, context: str, markers: dict[str, int]) -> list[int]:
    """The cross-file context's tokens: its repository markers as the model's own tokens, everything else
    with special tokens split (text can never become one; the snippets never hold a marker's text)."""
    ids: list[int] = []
    for part in _MARKER_SPLIT.split(context) if markers else [context]:
        if part in markers:
            ids.append(markers[part])
        elif part:
            ids += tokenizer(part, add_special_tokens=False, split_special_tokens=True).input_ids
    return ids


def start_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """The document-start token at position 0: `<|endoftext|>` for models pretrained on files
    separated by it, else BOS, else EOS. It also keeps every prompt non-empty."""
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)  # transformers types the special ids as Any
    raise ValueError("tokenizer has no <|endoftext|>, BOS or EOS token to start a document with")


# Identities of the slots that are not document tokens (head slot i is -1 - i).
PRE_UID, SUF_UID, MID_UID = -(1 << 40), -(1 << 40) - 1, -(1 << 40) - 2


@dataclass(frozen=True)
class Layout:
    tokens: list[int]  # what the cache holds
    uids: list[int]  # an identity per slot: a document token's uid, or a head/marker identity
    heal: str  # document text between the end of the prompt's prefix part and the cursor
    decode_at: int  # the prompt is tokens[:decode_at]; decoding starts after it
    prefix_base: int  # layout index of document token `window_start`
    window_start: int  # first document token in the prompt
    window_end: int  # one past the last document token of the prefix region (document layouts: past the caret)
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
    window_end: int | None = None,
) -> Layout:
    """Lay out `head` (start token + cross-file context), the document prefix and (FIM) suffix.

    `window_end` None: the prefix ends at the caret (prompt and FIM layouts); else a document
    layout holding document tokens [window_start, window_end) (which must contain the caret).
    """
    k = healed_token(doc, cursor)
    w = min(window_start, k)
    e = k if window_end is None else max(window_end, k)
    heal = doc.text[doc.offsets[k] : cursor] if k < len(doc.ids) else ""
    tokens = list(head)
    uids = [-1 - i for i in range(len(head))]
    if fim is not None:
        tokens.append(fim.prefix)
        uids.append(PRE_UID)
    prefix_base = len(tokens)
    tokens += doc.ids[w:e]
    uids += doc.uids[w:e]
    decode_at = prefix_base + k - w
    if fim is None:
        return Layout(tokens, uids, heal, decode_at, prefix_base, w, e, k, -1, k, k)
    assert window_end is None, "FIM layouts end their prefix at the caret"
    tokens.append(fim.suffix)
    uids.append(SUF_UID)
    # Tokens that start at or after the cursor; the rest of a token the cursor splits is
    # left out (the model usually re-creates it, and FIM stop rules trim any overlap).
    suffix_start = doc.token_index_at(cursor)
    suffix_end = min(len(doc.ids), suffix_start + suffix_tokens)
    suffix_base = len(tokens)
    tokens += doc.ids[suffix_start:suffix_end]
    uids += doc.uids[suffix_start:suffix_end]
    tokens.append(fim.middle)
    uids.append(MID_UID)
    return Layout(tokens, uids, heal, len(tokens), prefix_base, w, e, k, suffix_base, suffix_start, suffix_end)
