"""How much a reader changed a draft: character and word edit distances, BLEU-4, ROUGE-L.

ReportDiff percent (character edits / final length) follows the reader-study literature's
"percent of the report changed"; BLEU-4 and ROUGE-L are computed here, on whitespace words,
so the figures do not depend on a tokenizer download.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from reporting.worddiff import word_edit_distance, words


def char_edit_distance(old: str, new: str) -> int:
    """Levenshtein distance in characters (one numpy row per character of ``old``)."""
    if not old:
        return len(new)
    if not new:
        return len(old)
    target = np.frombuffer(new.encode("utf-32-le"), dtype=np.uint32)
    previous = np.arange(len(new) + 1, dtype=np.int64)
    for i, char in enumerate(old.encode("utf-32-le").decode("utf-32-le"), start=1):
        substitution = previous[:-1] + (target != ord(char))
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(previous[1:] + 1, substitution)
        # insertions run left to right: a running minimum of (current[j-1] + 1)
        current = np.minimum.accumulate(current - np.arange(len(current))) + np.arange(len(current))
        previous = current
    return int(previous[-1])


def report_diff_percent(draft: str, final: str) -> float:
    """Character edits needed to turn the draft into the final report, per final character."""
    return 100.0 * char_edit_distance(draft, final) / max(len(final), 1)


def word_edit_rate(draft: str, final: str) -> float:
    """Word edits per word of the final report."""
    return word_edit_distance(draft, final) / max(len(words(final)), 1)


def bleu4(hypothesis: str, reference: str) -> float:
    """Sentence BLEU-4 of the draft against the final report (add-one smoothing for n > 1)."""
    hyp, ref = words(hypothesis.lower()), words(reference.lower())
    if not hyp or not ref:
        return 0.0
    log_precision = 0.0
    for n in range(1, 5):
        hyp_ngrams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        ref_ngrams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        overlap = sum(min(count, ref_ngrams[gram]) for gram, count in hyp_ngrams.items())
        total = sum(hyp_ngrams.values())
        if n == 1:
            if overlap == 0:
                return 0.0
            log_precision += math.log(overlap / total)
        else:
            log_precision += math.log((overlap + 1) / (total + 1))
    brevity = min(0.0, 1 - len(ref) / len(hyp))
    return math.exp(brevity + log_precision / 4)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of words)."""
    hyp, ref = words(hypothesis.lower()), words(reference.lower())
    if not hyp or not ref:
        return 0.0
    lengths = [0] * (len(ref) + 1)
    for word in hyp:
        diagonal = 0
        for j, other in enumerate(ref, start=1):
            above = lengths[j]
            lengths[j] = diagonal + 1 if word == other else max(lengths[j], lengths[j - 1])
            diagonal = above
    lcs = lengths[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)
