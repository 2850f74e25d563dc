"""The corpus protocol: generator families, duplicate groups and the leave-generator-out split.

- **Family**: a catalogue's generator name normalised (``AdaSpeech-page:cln`` and ``AdaSpeech`` -> one
  family; suffixes like `` (VC)``, ``:200``, ``-page`` dropped), or the family an alias of the split file
  names. Reals have no family: their unit is their **source** (repository).
- **Split**: whole families and whole real sources go to train / val / test, as the split file
  (``corpus/splits.yaml``) lists them, else by a stable hash of the unit's name (adding rows never moves a
  unit). Benchmarks then report AUC on families never trained on and false alarms on sources never
  trained on.
- **Group**: rows linked by a duplicate (the same blob, the same file at other commits, numbered takes of
  one clip, a note naming the same driver, the speaker of one unit) share a group, and a group lives in
  one split: the most held-out split of its rows (test > val > train). A row whose unit belongs elsewhere
  is left out of the corpus and reported (a composite that shows a test family next to a train one).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dfdetect.data.manifest import SPLITS
from dfdetect.data.sources._common import SourceOptionError, UnionFind, natural_key

_RANK = {"train": 0, "val": 1, "test": 2}
_TAKE = re.compile(r"^(.+?)[_-]\d+$")  # "Nicola_Badge_1" -> "Nicola_Badge"
_SAME_AS = re.compile(r"same (?:driver|clip|source|identity) as (\S+)", re.IGNORECASE)


class Linkable(Protocol):
    """What grouping and splitting read of a catalogue row."""

    repo: str
    path: str
    blob: str
    label: str
    generator: str
    note: str
    speaker: str
    kind: str


@dataclass(frozen=True)
class SplitPlan:
    """The split file: units listed by split, family aliases, and the hash rule for the rest."""

    seed: str = "corpus-v1"
    val: float = 0.1  # share of unlisted units hashed to val
    test: float = 0.2  # share of unlisted units hashed to test
    listed: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> unit -> split
    aliases: tuple[tuple[str, re.Pattern], ...] = ()  # (family, pattern on the generator name)

    def family(self, generator: str) -> str:
        """The family of a generator name (see the module docstring)."""
        for name, pattern in self.aliases:
            if pattern.search(generator):
                return name
        return normalise_family(generator)

    def split_of(self, kind: str, unit: str) -> str:
        """The split of a unit (``family`` or ``real:<repo>``) of a catalogue kind (video, speech)."""
        listed = self.listed.get(kind, {}).get(unit)
        if listed:
            return listed
        digest = hashlib.sha1(f"{self.seed}/{kind}/{unit}".encode()).digest()
        share = int.from_bytes(digest[:8], "big") / 2**64  # [0, 1), the same on every machine
        return "test" if share < self.test else "val" if share < self.test + self.val else "train"


def normalise_family(generator: str) -> str:
    """``"AdaSpeech-page:cln"`` -> ``"adaspeech"``, ``"autovc (VC)"`` -> ``"autovc"``."""
    name = generator.strip()
    while True:
        stripped = re.sub(r"\s*\([^()]*\)\s*$", "", name)
        if stripped == name:
            break
        name = stripped
    name = name.split(":", 1)[0]
    name = re.sub(r"[-_ ]page$", "", name.strip(), flags=re.IGNORECASE)
    key = re.sub(r"[^0-9a-z]+", "", name.casefold())
    return key or re.sub(r"\s+", " ", generator.strip().casefold())


def load_plan(path: str | os.PathLike | None) -> SplitPlan:
    """Read a split file (YAML; see ``corpus/splits.yaml``); None gives the hash rule alone.

    Raises:
        SourceOptionError: the file is missing or malformed, or lists a unit in two splits.
    """
    if path is None:
        return SplitPlan()
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        rule = data.get("hash_rule", {})
        aliases = tuple(
            (str(name), re.compile(p, re.IGNORECASE))
            for name, patterns in (data.get("aliases") or {}).items()
            for p in patterns
        )
        listed = {kind: _listed(kind, data.get(kind) or {}) for kind in ("video", "speech")}
        return SplitPlan(str(data.get("seed", "corpus-v1")), float(rule.get("val", 0.1)),
                         float(rule.get("test", 0.2)), listed, aliases)  # fmt: skip
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError, re.error) as e:
        raise SourceOptionError(f"split file {path}: {e}") from e


def _listed(kind: str, table: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for split, units in table.items():
        if split not in SPLITS:
            raise ValueError(f"{kind}: unknown split {split!r} (train, val or test)")
        names = [str(f) for f in units.get("families") or []]
        names += [f"real:{r}" for r in units.get("real_sources") or []]
        for name in names:
            if out.get(name, split) != split:
                raise ValueError(f"{kind}: {name} is listed in {out[name]} and {split}")
            out[name] = split
    return out


def unit_of(entry: Linkable, plan: SplitPlan) -> str:
    """The unit a row is split by: its family (fakes) or ``real:<repo>`` (reals)."""
    return f"real:{entry.repo}" if entry.label == "real" else plan.family(entry.generator)


def link_keys(entry: Linkable, unit: str) -> list[str]:
    """Keys that tie a row to its duplicates (rows sharing a key share a group)."""
    keys = [f"blob:{entry.blob}", f"file:{entry.repo}:{entry.path}"]
    if entry.kind == "speech":
        if entry.speaker:
            keys.append(f"speaker:{unit}:{entry.speaker.casefold()}")
        return keys
    folder, _, name = entry.path.rpartition("/")
    take = _TAKE.match(name.rsplit(".", 1)[0])
    if take:
        keys.append(f"take:{entry.repo}:{folder}/{take.group(1)}")
    for other in _SAME_AS.findall(entry.note or ""):
        keys.append(f"file:{entry.repo}:{other.strip('.,;')}")
    if "repeated across files" in (entry.note or "").lower():
        keys.append(f"note:{entry.repo}:{entry.note.strip().lower()}")
    return keys


def group_ids(entries: Sequence[Linkable], units: Sequence[str]) -> list[str]:
    """A group per row: ``repo:path`` of the first (natural order) row of its linked set."""
    uf = UnionFind()
    for i, (entry, unit) in enumerate(zip(entries, units, strict=True)):
        for key in link_keys(entry, unit):
            uf.union(f"row:{i:09d}", key)
    names: dict[str, str] = {}
    for i, entry in enumerate(entries):
        root = uf.find(f"row:{i:09d}")
        name = f"{entry.repo}:{entry.path}"
        if root not in names or natural_key(name) < natural_key(names[root]):
            names[root] = name
    return [names[uf.find(f"row:{i:09d}")] for i in range(len(entries))]


def unit_splits(
    kinds: Sequence[str], units: Sequence[str], groups: Sequence[str], plan: SplitPlan
) -> list[str]:
    """Each row's split as its unit has it. Families and listed real sources: from the plan. A real
    source the split file does not list follows the most held-out family it shares a group with (the
    real driver of a composite goes where its fakes go), else the hash rule."""
    rows = list(zip(kinds, units, groups, strict=True))
    fixed = {(k, u): plan.split_of(k, u) for k, u, _ in rows
             if not u.startswith("real:") or u in plan.listed.get(k, {})}  # fmt: skip
    by_group: dict[str, str] = {}
    for k, u, g in rows:
        if (k, u) in fixed and _RANK[fixed[k, u]] >= _RANK[by_group.get(g, "train")]:
            by_group[g] = fixed[k, u]
    follow: dict[tuple[str, str], str] = {}
    for k, u, g in rows:
        if (k, u) not in fixed and g in by_group:
            best = follow.get((k, u), "train")
            follow[k, u] = by_group[g] if _RANK[by_group[g]] > _RANK[best] else best
    return [fixed.get((k, u)) or follow.get((k, u)) or plan.split_of(k, u) for k, u, _ in rows]


def resolve(units_splits: Iterable[str], groups: Sequence[str]) -> list[str | None]:
    """Each row's final split: its group's most held-out split, or None when its own unit's split
    differs (the row is left out: keeping it would put a unit or a group in two splits)."""
    wanted = list(units_splits)
    group_split: dict[str, str] = defaultdict(lambda: "train")
    for split, group in zip(wanted, groups, strict=True):
        if _RANK[split] > _RANK[group_split[group]]:
            group_split[group] = split
    return [s if group_split[g] == s else None for s, g in zip(wanted, groups, strict=True)]
