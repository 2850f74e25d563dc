"""Group-wise, method-stratified, seeded split assignment and the leak check."""

from __future__ import annotations

import pytest

from dfdetect.data.manifest import ManifestRow
from dfdetect.data.splits import SplitLeakError, assign_splits, check_no_leak, split_summary


def make_rows(n_groups: int = 60, methods=("real", "A", "B"), per_group: int = 2) -> list[ManifestRow]:
    """Groups g000..: each a real video plus fakes of one method (methods cycle over groups)."""
    rows = []
    for g in range(n_groups):
        method = methods[1:][g % (len(methods) - 1)]
        rows.append(ManifestRow(f"/d/g{g:03d}/real.mp4", 0, "t", "real", "", f"g{g:03d}"))
        for k in range(per_group):
            rows.append(ManifestRow(f"/d/g{g:03d}/fake{k}.mp4", 1, "t", method, "", f"g{g:03d}"))
    return rows


def groups_by_split(rows):
    out = {}
    for r in rows:
        out.setdefault(r.group, set()).add(r.split)
    return out


def test_every_row_gets_a_split_and_no_group_crosses():
    rows = assign_splits(make_rows(), val=0.2, test=0.2, seed=0)
    assert all(r.split in ("train", "val", "test") for r in rows)
    assert all(len(s) == 1 for s in groups_by_split(rows).values())
    check_no_leak(rows)


def test_keeps_existing_splits_and_joins_their_groups():
    rows = make_rows(20)
    rows[0] = rows[0].with_split("test")  # g000's real is officially test: its fakes follow it
    rows[3] = rows[3].with_split("val")  # g001's real
    out = assign_splits(rows, seed=5)
    assert [r.path for r in out] == [r.path for r in rows]  # order kept
    assert {r.split for r in out if r.group == "g000"} == {"test"}
    assert {r.split for r in out if r.group == "g001"} == {"val"}


def test_deterministic_by_seed():
    rows = make_rows()
    a = assign_splits(rows, seed=7)
    assert a == assign_splits(list(reversed(rows)), seed=7)[::-1]  # input order does not matter
    b = assign_splits(rows, seed=8)
    assert [r.split for r in a] != [r.split for r in b]


def test_each_method_is_spread_in_proportion():
    rows = make_rows(200, methods=("real", "A", "B", "C", "D"))
    out = assign_splits(rows, val=0.1, test=0.2, seed=1)
    summary = split_summary(out)
    for method in ("real", "A", "B", "C", "D"):
        total = sum(summary[s].get(method, 0) for s in summary)
        assert abs(summary["val"][method] / total - 0.1) <= 0.03, (method, summary)
        assert abs(summary["test"][method] / total - 0.2) <= 0.03, (method, summary)


def test_zero_fractions_and_bad_fractions():
    assert {r.split for r in assign_splits(make_rows(10), val=0, test=0)} == {"train"}
    with pytest.raises(ValueError, match="val \\+ test <= 1"):
        assign_splits(make_rows(3), val=0.6, test=0.6)


def test_check_no_leak_catches_a_group_in_two_splits():
    rows = assign_splits(make_rows(10), seed=0)
    check_no_leak(rows)
    first, second = rows[0], rows[1]  # same group g000
    assert first.group == second.group
    other = "test" if first.split != "test" else "train"
    leaked = [second.with_split(other) if r is second else r for r in rows]
    with pytest.raises(SplitLeakError) as e:
        check_no_leak(leaked)
    msg = str(e.value)
    assert f"group {first.group!r} is in 2 splits" in msg
    assert f"{first.split} (e.g. {first.path})" in msg and f"{other} (e.g. {second.path})" in msg


def test_unassigned_rows_are_ignored_by_the_leak_check():
    rows = [ManifestRow("/a.mp4", 0, "t", "real", "train", "g"), ManifestRow("/b.mp4", 1, "t", "A", "", "g")]
    check_no_leak(rows)


def test_few_large_groups_still_give_val_and_test_their_share():
    # Celeb-DF-like: identities linked by face swaps form a few big components
    rows = []
    for g, size in (("big", 160), ("mid1", 40), ("mid2", 40)):
        rows += [ManifestRow(f"/c/{g}/{i}.mp4", 1, "t", "swap", "", g) for i in range(size)]
    rows += [ManifestRow(f"/y/{i}.mp4", 0, "t", "real", "", f"yt{i}") for i in range(50)]
    summary = split_summary(assign_splits(rows, val=0.15, test=0.15, seed=0))
    assert summary["train"]["swap"] == 160 and summary["val"]["swap"] == summary["test"]["swap"] == 40
    assert all(summary[s]["real"] > 0 for s in ("train", "val", "test"))


def test_fractions_from_the_command_line_are_parsed_or_refused():
    from dfdetect.data.manifest import ManifestRow

    rows = [ManifestRow(path=f"/v/{i}.mp4", label=0, dataset="folder", method="real", split="", group=str(i))
            for i in range(20)]  # fmt: skip
    assert {r.split for r in assign_splits(rows, val="0.2", test="0.2")} == {"train", "val", "test"}
    with pytest.raises(ValueError, match="fractions such as 0.1"):
        assign_splits(rows, val="a fifth")
