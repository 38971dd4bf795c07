"""Which past latent frames condition the next one: the context schemes of FDM (Harvey et al. 2022).

Every scheme is a pure function ``select(history_len, budget, ...) -> indices``: the sorted
positions (0 = the first latent frame of the episode) of at most ``budget`` frames out of the
``history_len`` frames generated or given so far. The budget is in latent frames; the token
budget is ``budget * tokens_per_frame``, the same for every scheme, so a step costs the same
whichever scheme is used and however long the episode is.

  autoregressive  the newest ``budget`` frames (FDM's "Autoreg").
  long-range      the newest ``recent`` frames plus ``budget - recent`` frames spread over the whole
                  past, the first frame always kept (FDM's "Long-range"). The far frames are the
                  multiples of the smallest power-of-two stride that fits, topped up with the newest
                  frames of the next finer stride, so they are uniform over the past to within 2x.
  hierarchical    FDM's "Hierarchy" in an interactive env. FDM generates sparse keyframes first and
                  infills between them, which needs future actions; an env step knows only the
                  present one. What is kept is its conditioning pattern: keyframes sparse in the far
                  past and infilled densely towards the present, in levels of ``level_size``
                  frames whose stride doubles with each level back (1, 2, 4, ...), plus the first
                  frame.

While ``history_len <= budget`` every scheme keeps everything.

All three are *nested*: a frame left out once is never selected again, i.e.
``select(L + 1) ⊆ select(L) ∪ {L}``. The env relies on it to forget frames (their latents and
cached keys/values) as soon as they drop out, so memory is bounded by the budget, not the
episode length (tests/sim/test_context.py checks the property).
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("autoregressive", "long-range", "hierarchical")


def _check(history_len: int, budget: int) -> None:
    if history_len < 1:
        raise ValueError(f"history_len must be >= 1 (at least the first context frame), got {history_len}")
    if budget < 1:
        raise ValueError(f"the context budget must be >= 1 latent frame, got {budget}")


def autoregressive(history_len: int, budget: int) -> list[int]:
    """The newest ``budget`` of ``history_len`` frames."""
    _check(history_len, budget)
    return list(range(max(history_len - budget, 0), history_len))


def _dyadic_top(span: int, count: int) -> list[int]:
    """``count`` of the frames ``0 .. span-1`` spread evenly: all multiples of 2^j, then the newest odd multiples of 2^(j-1).

    It is the top ``count`` by the key (trailing zeros of the index, with 0 counting as infinite;
    then the index), so growing ``span`` by one never brings back a frame it dropped.
    """
    if span <= count:
        return list(range(span))
    j = 0
    while -(-span // (1 << j)) > count:  # ceil(span / 2^j) multiples of 2^j lie in [0, span)
        j += 1
    stride = 1 << j
    chosen = list(range(0, span, stride))
    half = stride >> 1
    odd = [i for i in range(half, span, stride)]  # tz(i) == j - 1
    chosen += odd[len(odd) - (count - len(chosen)):] if count > len(chosen) else []
    return sorted(chosen)


def long_range(history_len: int, budget: int, recent: int | None = None) -> list[int]:
    """The newest ``recent`` frames (default ``budget // 2``) plus frames spread over the rest of the past, frame 0 included."""
    _check(history_len, budget)
    recent = budget // 2 if recent is None else recent
    if budget >= 2 and not 1 <= recent <= budget - 1:
        raise ValueError(f"long-range needs 1 <= recent <= budget - 1 (room for the first frame), got recent={recent}, budget={budget}")
    if history_len <= budget:
        return list(range(history_len))
    if budget == 1:
        return [0]
    span = history_len - recent  # the far past [0, span)
    return _dyadic_top(span, budget - recent) + list(range(span, history_len))


def hierarchical(history_len: int, budget: int, level_size: int = 4) -> list[int]:
    """Frame 0 plus levels of ``level_size`` frames, stride 1 next to the present and doubling each level back."""
    _check(history_len, budget)
    if level_size < 1:
        raise ValueError(f"level_size must be >= 1, got {level_size}")
    if history_len <= budget:
        return list(range(history_len))
    chosen, remaining = [0], budget - 1
    cursor, stride = history_len, 1
    while remaining > 0:
        top = (cursor - 1) // stride * stride  # the largest multiple of the stride below the cursor
        level = [i for i in range(top, 0, -stride)][: min(level_size, remaining)]
        if not level:
            break
        chosen += level
        remaining -= len(level)
        cursor, stride = level[-1], stride * 2
    return sorted(chosen)


@dataclass
class ContextScheme:
    """A context scheme with its parameters; `select` is the scheme's pure function."""

    name: str = "autoregressive"  # autoregressive | long-range | hierarchical
    budget: int = 16  # latent frames the model attends to per step (tokens = budget x tokens per frame)
    recent: int | None = None  # long-range: newest frames kept (None: budget // 2)
    level_size: int = 4  # hierarchical: frames per level

    def __post_init__(self) -> None:
        if self.name not in SCHEMES:
            raise ValueError(f"unknown context scheme {self.name!r}; known: {', '.join(SCHEMES)}")
        self.select(self.budget + 1)  # validates the parameters now rather than mid-episode

    def select(self, history_len: int) -> list[int]:
        """Sorted positions of the frames that condition frame ``history_len`` (at most ``budget``)."""
        if self.name == "autoregressive":
            return autoregressive(history_len, self.budget)
        if self.name == "long-range":
            return long_range(history_len, self.budget, self.recent)
        return hierarchical(history_len, self.budget, self.level_size)
