"""The `scenarios:` of a bench config: forget specs, and sequential scenarios (chains of requests).

A plain entry is a forget spec (`class:3`, `random:0.1`, ...). A mapping
`{sequence: [SPEC, SPEC, ...], name: NAME}` is a chain of deletion requests run one after
another (`mumis.bench.sequence`). Everything here is checked before any work; each problem is one
`ConfigError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..exceptions import MumisError
from .entries import _err, slug


@dataclass(frozen=True)
class SequenceScenario:
    """A sequential scenario: forget specs requested one after another (`bench.sequence`)."""

    name: str
    specs: tuple[str, ...]

    @property
    def label(self) -> str:
        """Its part of a cell id: `seq-NAME`."""
        return f"seq-{slug(self.name)}"

    def request_label(self, k: int) -> str:
        """The scenario part of request k's cell ids (k from 1): `seq-NAME__r<k>`."""
        return f"{self.label}__r{int(k)}"

    def split_seeds(self, base: int) -> list[int]:
        """Each request's split seed: `base`, `base + 1`, ... (distinct random chunks)."""
        return [int(base) + i for i in range(len(self.specs))]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sequence": list(self.specs)}


def _scenarios(data: dict[str, Any], path: str) -> tuple[list[str], list[SequenceScenario]]:
    """`scenarios`: forget specs (strings) and sequential scenarios (mappings)."""
    v = data["scenarios"]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise _err(path, f"`scenarios` must be a non-empty list of forget specs, got {v!r}")
    plain = [x for x in v if not isinstance(x, dict)]
    if plain and not all(isinstance(x, str) and x.strip() for x in plain):
        raise _err(path, f"`scenarios` must list forget specs or {{sequence: [...]}} mappings, got {v!r}")
    if len(set(plain)) != len(plain):
        raise _err(path, f"`scenarios` lists an entry twice: {plain!r}")
    seqs = [_sequence(x, path) for x in v if isinstance(x, dict)]
    names = [q.label for q in seqs]
    if len(set(names)) != len(names):
        raise _err(path, f"two sequential scenarios have the same name ({', '.join(names)}); give each its own `name`")
    return [str(x).strip() for x in plain], seqs


def _sequence(x: dict[str, Any], path: str) -> SequenceScenario:
    """One `{sequence: [specs], name: NAME}` mapping, checked."""
    from ..data import parse_forget_spec

    unknown = [k for k in x if k not in ("sequence", "name")]
    if unknown or "sequence" not in x:
        raise _err(path, f"a sequential scenario is a mapping {{sequence: [forget specs], name: NAME}}, "
                         f"got {x!r}")
    specs = x["sequence"]
    if (not isinstance(specs, list) or len(specs) < 2
            or not all(isinstance(s, str) and s.strip() for s in specs)):
        raise _err(path, f"`sequence` must list at least 2 forget specs (one per request), got {specs!r}")
    specs = [s.strip() for s in specs]
    spaces = set()
    for s in specs:
        try:
            parsed = parse_forget_spec(s)
        except MumisError as e:
            raise _err(path, f"sequence {specs!r}: {e}") from None
        spaces.add("coarse" if parsed.kind == "subclass" else "fine")
    if len(spaces) > 1:
        raise _err(path, f"sequence {specs!r} mixes sub-class specs (superclass labels) with specs of "
                         "the fine labels; a chain stays in one label space")
    name = x.get("name", "+".join(slug(s) for s in specs))
    if not isinstance(name, str) or not name.strip():
        raise _err(path, f"`name` of sequence {specs!r} must be a non-empty string, got {name!r}")
    return SequenceScenario(name=name.strip(), specs=tuple(specs))


def _specs(scenarios: list[str], path: str) -> dict[str, Any]:
    """Each scenario's parsed forget spec."""
    from ..data import parse_forget_spec

    specs = {}
    for s in scenarios:
        try:
            specs[s] = parse_forget_spec(s)
        except MumisError as e:
            raise _err(path, f"scenario {s!r}: {e}") from None
    return specs


def _resolve_sequence(q: SequenceScenario, bundle: Any, seed: int, path: str, d: str) -> None:
    """Each request of `q` resolved as the chain will (`runs.chain`): one that selects nothing
    new (everything already forgotten by earlier requests) fails here, before any training."""
    from ..data import full_manifest, resolve_manifest
    from ..runs.chain import chain_manifest

    before = None
    for s, k in zip(q.specs, q.split_seeds(seed), strict=True):
        try:
            if before is None:  # nothing forgotten yet, in the first request's label space
                before = full_manifest(bundle, resolve_manifest(s, bundle, seed=k).label_space)
            before = chain_manifest(s, bundle, before, k)[0]
        except MumisError as e:
            raise _err(path, f"sequential scenario {q.name!r} on {d}, request {s!r}: {e}") from None
