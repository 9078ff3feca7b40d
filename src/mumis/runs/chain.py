"""Sequential deletion requests: an unlearning run continued from another unlearning run.

Every request's forget spec is resolved on the ORIGINAL's split (its dataset, holdout and, unless
the request gives another, its split seed), so a request means the same samples wherever it lands
in a chain; the seed of each is recorded. The run's manifest
then holds the samples new to this request (`forget`), everything earlier requests forgot
(`forgotten_before`), the retain set without either and, for a class request, the remaining test
samples without the classes earlier requests forgot entirely. meta.json's `chain` lists the requests
so far (spec, manifest hash, samples, new ones, overlap, the checkpoint each started from and
that checkpoint's manifest hash) and the union of everything forgotten, with its hash.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    from ..data import DatasetBundle, Manifest


def requests_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The requests recorded in an unlearning run's meta.json (a run made before chains were
    recorded counts as one request started from its `parent`); [] for a trained model."""
    if meta.get("kind") != "unlearn":
        return []
    chain = meta.get("chain")
    if isinstance(chain, dict) and isinstance(chain.get("requests"), list):
        return [dict(r) for r in chain["requests"]]
    m = meta.get("manifest") or {}
    return [{"forget_spec": meta.get("forget_spec"), "manifest_hash": m.get("hash"),
             "num_forget": len(m.get("forget") or []), "parent": meta.get("parent"),
             "parent_manifest_hash": None}]


def check_chain(checkpoint: str | Path, meta: dict[str, Any]) -> None:
    """CheckpointError for a broken chain: a run directory it came from is missing, holds
    another dataset, or its manifest changed since the request was made."""
    from ..checkpoint import read_meta

    name = (meta.get("dataset") or {}).get("name")
    for i, req in enumerate(requests_of(meta), 1):
        parent = str(req.get("parent"))
        where = f"broken chain: {str(checkpoint)!r} continues request {i} from {parent!r}"
        try:
            pm = read_meta(parent)
        except CheckpointError:
            raise CheckpointError(f"{where}, which is missing or no run directory; restore it there, or "
                                  "start the chain again from the original") from None
        if (pm.get("dataset") or {}).get("name") != name:
            raise CheckpointError(f"{where}, a run on dataset {(pm.get('dataset') or {}).get('name')!r}, "
                                  f"not {name!r}; a chain stays on one dataset")
        want = req.get("parent_manifest_hash")
        if want is not None and (pm.get("manifest") or {}).get("hash") != want:
            raise CheckpointError(f"{where}, whose split manifest changed since (hash "
                                  f"{str((pm.get('manifest') or {}).get('hash'))[:12]}, recorded {str(want)[:12]}); "
                                  "restore that run directory as it was")


def chain_manifest(spec: str, bundle: DatasetBundle, before: Manifest, seed: int) -> tuple[Manifest, int]:
    """The manifest of request `spec` continuing from a run whose manifest is `before`, and how
    many of the spec's samples earlier requests already forgot (the overlap).

    Raises:
        DataError: the spec selects nothing new (all its samples are forgotten already).
    """
    from ..data import Manifest, resolve_manifest

    m = resolve_manifest(spec, bundle, seed=seed, holdout=before.holdout)
    prior = before.union
    new = np.setdiff1d(m.forget, prior).astype(np.int64)
    overlap = len(m.forget) - len(new)
    if not len(new):
        raise DataError(f"forget spec {spec!r} selects nothing new: all its {len(m.forget)} samples were "
                        f"forgotten by the chain's earlier requests ({len(prior)} so far); nothing to do")
    test_rem = m.test_remaining
    if test_rem is not None:  # classes earlier requests forgot entirely stay out of "remaining"
        gone = _gone_classes(bundle, prior, before.held_out)
        test_rem = test_rem[~np.isin(bundle.y_test.numpy()[test_rem], gone)].astype(np.int64)
    out = Manifest(dataset=m.dataset, spec=m.spec, kind=m.kind, seed=m.seed, label_space=m.label_space,
                   num_classes=m.num_classes, forgotten_classes=m.forgotten_classes, forget=new,
                   retain=np.setdiff1d(m.retain, prior).astype(np.int64), test_remaining=test_rem,
                   test_forgotten=m.test_forgotten, holdout=m.holdout, forgotten_before=prior)
    out.hash = out.compute_hash()
    return out, overlap


def _gone_classes(bundle: DatasetBundle, prior: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The (fine) classes all of whose training samples outside the holdout are in `prior`."""
    y = bundle.y_train.numpy()
    kept = np.ones(len(y), dtype=bool)
    kept[prior] = False
    kept[held] = False
    return np.setdiff1d(np.unique(y[prior]), np.unique(y[kept]))


def note_overlap(manifest: Manifest, overlap: int) -> None:
    """The one stderr line that says a request overlaps earlier ones (said once all is checked)."""
    if overlap:
        print(f"mumis: note: forget spec {manifest.spec!r} overlaps earlier requests: {overlap} of its "
              f"{overlap + len(manifest.forget)} samples are forgotten already; this request forgets "
              f"the other {len(manifest.forget)}", file=sys.stderr)


def origin_seed(meta: dict[str, Any]) -> int:
    """The split seed of a chain's original (the default of its requests, and its holdout's)."""
    from ..checkpoint import split_seed_of

    chain = meta.get("chain") if meta.get("kind") == "unlearn" else None
    return int(chain["split_seed"]) if isinstance(chain, dict) and "split_seed" in chain else split_seed_of(meta)


def chain_block(checkpoint: str | Path, parent: dict[str, Any], manifest: Manifest, overlap: int) -> dict[str, Any]:
    """meta.json's `chain` of a run that made request `manifest` from `checkpoint` (meta `parent`)."""
    from ..utils import hash_arrays

    requests = requests_of(parent)
    requests.append({
        "forget_spec": manifest.spec, "split_seed": int(manifest.seed), "manifest_hash": manifest.hash,
        "num_forget": int(len(manifest.forget)) + int(overlap), "num_new": int(len(manifest.forget)),
        "overlap": int(overlap), "parent": str(Path(checkpoint).resolve()),
        "parent_manifest_hash": (parent.get("manifest") or {}).get("hash"),
    })
    union = manifest.union
    return {"split_seed": origin_seed(parent), "requests": requests,
            "union": {"num": int(len(union)), "hash": hash_arrays(union), "indices": [int(i) for i in union]}}


def check_chain_reference(reference: str | Path, manifest: Manifest, checkpoint: str | Path) -> dict[str, Any]:
    """The meta of `reference` when it was retrained without the chain's union (and keeps the
    same retain set); ConfigError naming the model to train otherwise."""
    from ..checkpoint import read_meta
    from ..data import Manifest as _Manifest

    ref = read_meta(reference)
    try:
        rm = _Manifest.from_dict(ref.get("manifest") or {})
    except DataError as e:
        raise ConfigError(f"reference {str(reference)!r}: {e}") from None
    union = manifest.union
    if (rm.dataset == manifest.dataset and rm.label_space == manifest.label_space
            and np.array_equal(rm.union, union) and np.array_equal(rm.retain, manifest.retain)):
        return ref
    # evaluating the chain run itself: its chain already holds this request
    own = Path(checkpoint).is_dir() and (read_meta(checkpoint).get("manifest") or {}).get("hash") == manifest.hash
    train = f"--forget-chain {checkpoint}" + ("" if own else f" --forget {manifest.spec}")
    raise ConfigError(
        f"reference {str(reference)!r} was trained without {len(rm.union)} samples of {rm.dataset!r} "
        f"({ref.get('forget_spec')!r}), but the chain has forgotten {len(union)} samples of "
        f"{manifest.dataset!r} so far; train it without the union: `mumis train {train}` with the "
        "original's --dataset and --holdout"
    )


def union_manifest(specs: list[str], bundle: DatasetBundle, seeds: list[int],
                   holdout: np.ndarray | None) -> Manifest:
    """One manifest forgetting every sample of several forget specs, each resolved on the same
    split with its seed (what a chain of these requests forgot): the reference of a chain."""
    from ..data import Manifest, resolve_manifest

    parts = [resolve_manifest(s, bundle, seed=k, holdout=holdout) for s, k in zip(specs, seeds, strict=True)]
    spaces = {m.label_space for m in parts}
    if len(spaces) > 1:
        raise DataError(f"forget specs {', '.join(specs)} mix the {' and '.join(sorted(spaces))} label spaces; "
                        "give specs of one label space")
    union = np.unique(np.concatenate([m.forget for m in parts])).astype(np.int64)
    free = np.ones(len(bundle.y_train), dtype=bool)
    free[union] = False
    held = None if holdout is None else np.setdiff1d(holdout, union).astype(np.int64)
    if held is not None:
        free[held] = False
    tests = all(m.test_remaining is not None for m in parts)
    kinds = {m.kind for m in parts}
    first = parts[0]
    m = Manifest(dataset=first.dataset, spec=" + ".join(specs),
                 kind=first.kind if len(kinds) == 1 else "indices", seed=first.seed,
                 label_space=first.label_space, num_classes=first.num_classes,
                 forgotten_classes=sorted({c for p in parts for c in p.forgotten_classes}),
                 forget=union, retain=np.flatnonzero(free).astype(np.int64),
                 test_remaining=_reduce(np.intersect1d, [p.test_remaining for p in parts]) if tests else None,
                 test_forgotten=_reduce(np.union1d, [p.test_forgotten for p in parts]) if tests else None,
                 holdout=held if held is not None and len(held) else None)
    m.hash = m.compute_hash()
    return m


def _reduce(op: Any, arrays: list[Any]) -> np.ndarray:
    out = arrays[0]
    for a in arrays[1:]:
        out = op(out, a)
    return np.asarray(out, dtype=np.int64)


def chain_specs(run: str | Path) -> tuple[list[str], list[int], int, np.ndarray]:
    """(forget specs, their split seeds, the original's split seed, union of forgotten indices) of
    the chain recorded in unlearning run `run` (the union of its manifest: the hashed record)."""
    from ..checkpoint import read_meta
    from ..data import Manifest

    meta = read_meta(run)
    reqs = requests_of(meta)
    if not reqs:
        raise ConfigError(f"--forget-chain {str(run)!r} is a {meta.get('kind')!r} run, not an unlearning run; "
                          "give the --out folder of `mumis unlearn`")
    check_chain(run, meta)
    seed = origin_seed(meta)
    union = Manifest.from_dict(meta.get("manifest") or {}).union
    seeds = [int(r.get("split_seed", seed)) for r in reqs]
    return [str(r["forget_spec"]) for r in reqs], seeds, seed, union


def train_forget_specs(forget: str | list[str] | None, chain: str | Path | None,
                       split_seed: int) -> tuple[list[str], list[int], int, Any]:
    """(forget specs, their split seeds, the run's split seed, the chain's union or None) of
    `train_run`'s arguments: with a chain, its requests' seeds and its original's (the holdout's);
    `split_seed` draws the further specs."""
    specs = [] if not forget else [forget] if isinstance(forget, str) else list(forget)
    if chain is None:
        return specs, [split_seed] * len(specs), split_seed, None
    done, seeds, seed, union = chain_specs(chain)
    return done + specs, seeds + [split_seed] * len(specs), seed, union


def check_union(manifest: Any, union: Any, chain: str | Path | None, extra: bool) -> None:
    """DataError when the chain's specs no longer select what the chain forgot (e.g. an
    index file changed since)."""
    if union is None:
        return
    if not np.isin(union, manifest.forget).all() or (not extra and len(manifest.forget) != len(union)):
        raise DataError(f"the requests of --forget-chain {str(chain)!r} now select other samples than the chain "
                        "forgot (an index file changed since?); restore the files its forget specs name")
