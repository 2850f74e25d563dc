"""Train/val/test splits by group: a source identity never appears in two splits.

``assign_splits`` keeps the splits a dataset ships with and assigns the rest group by group,
stratified by method, deterministically for a seed. ``check_no_leak`` proves the result.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from dfdetect.data.manifest import SPLITS, ManifestRow


class SplitLeakError(ValueError):
    """A group (source identity) has videos in more than one split."""


def _fractions(val: float | str, test: float | str) -> dict[str, float]:
    try:  # options from the command line arrive as strings
        val, test = float(val), float(test)
    except ValueError:
        raise ValueError(f"val and test must be fractions such as 0.1, got {val!r}, {test!r}") from None
    if not (0 <= val <= 1 and 0 <= test <= 1 and val + test <= 1):
        raise ValueError(f"val and test fractions must be in [0, 1] with val + test <= 1, got {val}, {test}")
    return {"train": 1.0 - val - test, "val": val, "test": test}


def _existing_group_splits(rows: Sequence[ManifestRow]) -> dict[str, str]:
    """For groups that already have a split somewhere: their (most common) split."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        if row.split:
            seen[row.group][row.split] += 1
    return {g: c.most_common(1)[0][0] for g, c in seen.items()}


def _choose_split(
    methods: Counter, fractions: dict[str, float], totals: Counter, filled: dict[tuple[str, str], int]
) -> str:
    """The split whose per-method counts get closest to their targets with this group in it.

    Cost of a split: for each method of the group, the change of |count - target| relative to the
    target (target = fraction x the method's total), summed. Relative errors make a small split
    (val, test) get its share even when the groups are few and large.
    """
    best, best_cost = "train", np.inf
    for split in SPLITS:
        if fractions[split] <= 0:
            continue
        cost = 0.0
        for method, n in methods.items():
            target = fractions[split] * totals[method]
            have = filled[split, method]
            cost += (abs(have + n - target) - abs(have - target)) / target
        if cost < best_cost - 1e-12:
            best, best_cost = split, cost
    return best


def _assign_groups(pending: dict[str, list[ManifestRow]], fractions: dict[str, float], seed: int) -> dict:
    """Greedy, seeded assignment of whole groups so each method is spread in proportion."""
    totals: Counter = Counter(r.method for rows in pending.values() for r in rows)
    filled: dict[tuple[str, str], int] = defaultdict(int)
    group_ids = sorted(pending)
    order = np.random.default_rng(seed).permutation(len(group_ids))
    # big groups first (they are the hard ones to place), shuffled order among equal sizes
    ranked = sorted(order, key=lambda i: -len(pending[group_ids[i]]))
    decided: dict[str, str] = {}
    for i in ranked:
        gid = group_ids[i]
        methods = Counter(r.method for r in pending[gid])
        split = _choose_split(methods, fractions, totals, filled)
        decided[gid] = split
        for m, n in methods.items():
            filled[split, m] += n
    return decided


def assign_splits(
    rows: Iterable[ManifestRow], val: float = 0.1, test: float = 0.1, seed: int = 0
) -> list[ManifestRow]:
    """Fill in the split of rows that have none, by group.

    Rows that already have a split keep it. A row without one joins its group's split when the group
    already has one; the remaining groups are assigned whole (no group in two splits), stratified by
    method (each method is spread over train/val/test in proportion), deterministically for ``seed``.

    Args:
        rows: manifest rows (``split == ""`` means not assigned yet).
        val: fraction of the unassigned rows that go to "val".
        test: fraction of the unassigned rows that go to "test".
        seed: seed of the numpy generator that orders the groups.

    Returns:
        The rows in the input order, every one with a split.
    """
    rows = list(rows)
    fractions = _fractions(val, test)
    existing = _existing_group_splits(rows)
    pending: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        if not row.split and row.group not in existing:
            pending[row.group].append(row)
    decided = {**_assign_groups(pending, fractions, seed), **existing}
    return [row if row.split else row.with_split(decided[row.group]) for row in rows]


def check_no_leak(rows: Iterable[ManifestRow]) -> None:
    """Raise :class:`SplitLeakError` when a group has videos in more than one split.

    Rows without a split are ignored. The message names the groups, their splits and example videos.
    """
    splits: dict[str, dict[str, str]] = defaultdict(dict)  # group -> split -> example path
    for row in rows:
        if row.split:
            splits[row.group].setdefault(row.split, row.path)
    leaks = {g: s for g, s in splits.items() if len(s) > 1}
    if not leaks:
        return
    lines = []
    for group in sorted(leaks)[:5]:
        where = ", ".join(f"{s} (e.g. {p})" for s, p in sorted(leaks[group].items()))
        lines.append(f"group {group!r} is in {len(leaks[group])} splits: {where}")
    more = f"; and {len(leaks) - 5} more groups" if len(leaks) > 5 else ""
    raise SplitLeakError(
        f"{len(leaks)} group(s) cross splits, so a source identity would be trained and tested on: "
        + "; ".join(lines)
        + more
        + ". Give each group a single split (or re-run the split assignment)."
    )


def split_summary(rows: Iterable[ManifestRow]) -> dict[str, dict[str, int]]:
    """Counts per split and method: ``{split: {method: n}}`` (for logs and docs)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        out[row.split][row.method] += 1
    return {s: dict(m) for s, m in out.items()}
