"""Forget specifications (`class:3`, `subclass:rose`, `random:0.1`, `indices:FILE`) and the
split manifest they resolve to.

A manifest fixes which training samples are forgotten and which are retained, which test
samples belong to the remaining and the forgotten classes, and the label space the models are
trained in. It is stored with every run, so the original model, the retrained oracle and every
unlearning method see exactly the same split; its content hash makes mismatches detectable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..exceptions import DataError
from ..registry import did_you_mean
from ..utils import hash_arrays
from .base import DatasetBundle, LabelSpace
from .holdout import _check_holdout, draw_holdout, parse_holdout

__all__ = ["ForgetSpec", "Manifest", "draw_holdout", "full_manifest", "parse_forget_spec", "parse_holdout",
           "read_index_file", "resolve_manifest"]

SpecKind = Literal["class", "subclass", "random", "indices"]
SPEC_HELP = "use class:K[,K...], subclass:NAME_OR_ID, random:FRACTION_OR_COUNT (0.1, 10%, 600) or indices:FILE"


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget specification."""

    kind: SpecKind
    text: str
    classes: tuple[int, ...] = ()
    subclass: str = ""
    fraction: float | None = None
    count: int | None = None
    path: str = ""


def parse_forget_spec(text: str) -> ForgetSpec:
    """Parse a forget specification string; DataError with the accepted forms if malformed."""
    if not isinstance(text, str) or ":" not in text:
        raise DataError(f"bad forget spec {text!r}; {SPEC_HELP}")
    kind, _, arg = text.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if not arg:
        raise DataError(f"forget spec {text!r} has nothing after ':'; {SPEC_HELP}")
    if kind == "class":
        parts = [p.strip() for p in arg.split(",")]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise DataError(
                f"forget spec {text!r}: classes must be integers like class:3 or class:3,5"
            )
        classes = tuple(sorted({int(p) for p in parts}))
        return ForgetSpec(kind="class", text=text, classes=classes)
    if kind == "subclass":
        return ForgetSpec(kind="subclass", text=text, subclass=arg)
    if kind == "random":
        if arg.endswith("%"):
            return ForgetSpec(kind="random", text=text, fraction=_percent(text, arg[:-1].strip()))
        if re.fullmatch(r"\d+", arg):
            n = int(arg)
            if n < 1:
                raise DataError(f"forget spec {text!r}: the count must be at least 1")
            return ForgetSpec(kind="random", text=text, count=n)
        try:
            frac = float(arg)
        except ValueError:
            raise DataError(
                f"forget spec {text!r}: expected a fraction in (0, 1) like random:0.1 "
                "or a count like random:600"
            ) from None
        if not 0.0 < frac < 1.0:
            raise DataError(
                f"forget spec {text!r}: the fraction must be strictly between 0 and 1 "
                "(for a count write an integer, e.g. random:600)"
            )
        return ForgetSpec(kind="random", text=text, fraction=frac)
    if kind == "indices":
        return ForgetSpec(kind="indices", text=text, path=arg)
    hint = did_you_mean(kind, ["class", "subclass", "random", "indices"])
    raise DataError(f"unknown forget spec kind {kind!r} in {text!r}.{hint} {SPEC_HELP}")


def _percent(text: str, number: str) -> float:
    """The fraction of `random:P%` (P strictly between 0 and 100)."""
    try:
        pct = float(number)
    except ValueError:
        pct = float("nan")
    if not 0.0 < pct < 100.0:  # also NaN
        raise DataError(f"forget spec {text!r}: the percentage must be a number strictly between 0 and 100, "
                        "e.g. random:1% or random:10%")
    return pct / 100.0


def read_index_file(path: str | Path) -> np.ndarray:
    """Read integer indices from a text file (whitespace/comma separated) or a `.npy` file."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"index file {str(p)!r} is a folder; give a text file (or .npy) of integer indices")
    if not p.is_file():
        raise DataError(f"index file {str(p)!r} not found; give a text file of integer indices")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)  # never unpickle
        except (ValueError, OSError) as e:
            raise DataError(
                f"index file {str(p)!r} is not a plain .npy integer array ({e})"
            ) from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
            kind = getattr(arr, "dtype", "npz archive")
            raise DataError(
                f"index file {str(p)!r} holds {kind} values; integer indices expected"
            )
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int64).max):
            raise DataError(
                f"index file {str(p)!r} holds negative or huge indices; give indices 0..N-1"
            )
        arr = arr.reshape(-1).astype(np.int64)
    else:
        tokens = [t for t in re.split(r"[\s,]+", p.read_text(errors="replace")) if t]
        bad = [t for t in tokens if not re.fullmatch(r"\d+", t)]
        if bad:
            raise DataError(
                f"index file {str(p)!r} contains {bad[0]!r}; "
                "it must hold non-negative integers only"
            )
        arr = np.array([int(t) for t in tokens], dtype=np.int64)
    if arr.size == 0:
        raise DataError(f"index file {str(p)!r} is empty; it must list at least one training index")
    return arr


@dataclass
class Manifest:
    """The split every model and method of one scenario shares (indices into train / test)."""

    dataset: str
    spec: str
    kind: SpecKind
    seed: int
    label_space: LabelSpace
    num_classes: int  # in the label space the models are trained in
    forgotten_classes: list[int]  # class ids (class-wise), fine id (sub-class), [] otherwise
    forget: np.ndarray  # train indices forgotten, sorted
    retain: np.ndarray  # train indices kept, sorted
    test_remaining: np.ndarray | None = None  # test indices of kept classes (class/sub-class)
    test_forgotten: np.ndarray | None = None  # test indices of the forgotten class(es)
    hash: str = ""
    #: train indices held out of every model of the run (a validation split no model trained
    #: on, see `draw_holdout`), sorted; None: none (runs made before the holdout existed)
    holdout: np.ndarray | None = None
    #: (sequential requests) train indices forgotten by the earlier requests of the chain, sorted;
    #: in neither forget nor retain. None: a single request
    forgotten_before: np.ndarray | None = None

    @property
    def union(self) -> np.ndarray:
        """Everything forgotten so far: this request's samples and the earlier requests'."""
        prior = np.zeros(0, dtype=np.int64) if self.forgotten_before is None else self.forgotten_before
        return np.union1d(prior, self.forget).astype(np.int64)

    def compute_hash(self) -> str:
        parts: list[Any] = [self.dataset, self.kind, self.seed, self.label_space, self.num_classes,
                            list(self.forgotten_classes), self.forget, self.retain,
                            self.test_remaining, self.test_forgotten]
        if self.holdout is not None and len(self.holdout):  # absent: the hash of older runs
            parts.append(self.holdout)
        if self.forgotten_before is not None:  # absent: the hash of single requests
            parts += ["forgotten_before", self.forgotten_before]
        return hash_arrays(*parts)

    def same_split(self, other: Manifest) -> bool:
        """True when both select the same samples in the same label space, whatever seed made
        them (a class, sub-class or index spec does not depend on the seed)."""
        def eq(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            return (a is None) == (b is None) and (a is None or np.array_equal(a, b))  # type: ignore[arg-type]

        return ((self.dataset, self.kind, self.label_space, self.num_classes, list(self.forgotten_classes))
                == (other.dataset, other.kind, other.label_space, other.num_classes, list(other.forgotten_classes))
                and all(eq(a, b) for a, b in ((self.forget, other.forget), (self.retain, other.retain),
                                              (self.test_remaining, other.test_remaining),
                                              (self.test_forgotten, other.test_forgotten)))
                and np.array_equal(self.held_out, other.held_out) and np.array_equal(self.union, other.union))

    @property
    def held_out(self) -> np.ndarray:
        """The holdout's train indices (empty when there is none)."""
        return np.zeros(0, dtype=np.int64) if self.holdout is None else self.holdout

    def to_dict(self) -> dict[str, Any]:
        def arr(a: np.ndarray | None) -> list[int] | None:
            return None if a is None else [int(i) for i in a]

        return {
            "dataset": self.dataset, "spec": self.spec, "kind": self.kind, "seed": self.seed,
            "label_space": self.label_space, "num_classes": self.num_classes,
            "forgotten_classes": list(self.forgotten_classes), "hash": self.hash,
            "forget": arr(self.forget), "retain": arr(self.retain),
            "test_remaining": arr(self.test_remaining), "test_forgotten": arr(self.test_forgotten),
            **({} if self.holdout is None else {"holdout": arr(self.holdout)}),
            **({} if self.forgotten_before is None else {"forgotten_before": arr(self.forgotten_before)}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        def arr(a: Any) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=np.int64)

        try:
            m = cls(
                dataset=d["dataset"], spec=d["spec"], kind=d["kind"], seed=int(d["seed"]),
                label_space=d["label_space"], num_classes=int(d["num_classes"]),
                forgotten_classes=[int(c) for c in d["forgotten_classes"]],
                forget=arr(d["forget"]), retain=arr(d["retain"]),  # type: ignore[arg-type]
                test_remaining=arr(d.get("test_remaining")),
                test_forgotten=arr(d.get("test_forgotten")),
                hash=d.get("hash", ""), holdout=arr(d.get("holdout")),
                forgotten_before=arr(d.get("forgotten_before")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"malformed split manifest (missing or bad field: {e})") from None
        # a hand-made manifest has no hash, so check the fields that steer training
        if m.kind not in ("class", "subclass", "random", "indices") or m.label_space not in (
            "fine", "coarse"
        ) or m.forget is None or m.retain is None:
            raise DataError(
                f"malformed split manifest: kind {m.kind!r}, label_space {m.label_space!r}; "
                "it needs a kind (class, subclass, random, indices), a label_space (fine, coarse) "
                "and forget and retain index lists"
            )
        if m.hash and m.hash != m.compute_hash():
            raise DataError("split manifest content does not match its hash; the file was altered")
        return m

    def save(self, path: str | Path) -> None:
        from ..utils import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()) + "\n")


def full_manifest(bundle: DatasetBundle, label_space: LabelSpace = "fine",
                  holdout: np.ndarray | None = None) -> Manifest:
    """The manifest of an original model trained on all training data (nothing forgotten)
    except the `holdout` indices, if any."""
    keep = np.ones(len(bundle.y_train), dtype=bool)
    held = _check_holdout(holdout, len(keep))
    if held is not None:
        keep[held] = False
    m = Manifest(dataset=bundle.name, spec="none", kind="indices", seed=0, label_space=label_space,
                 num_classes=bundle.num_classes_in(label_space), forgotten_classes=[],
                 forget=np.zeros(0, dtype=np.int64), retain=np.flatnonzero(keep).astype(np.int64),
                 holdout=held)
    m.hash = m.compute_hash()
    return m


def _check_classes(spec: ForgetSpec, num_classes: int) -> None:
    bad = [c for c in spec.classes if c >= num_classes]
    if bad:
        raise DataError(
            f"forget spec {spec.text!r}: class {bad[0]} is out of range; "
            f"this dataset has classes 0..{num_classes - 1}"
        )
    if len(spec.classes) >= num_classes:
        raise DataError(f"forget spec {spec.text!r} forgets every class; keep at least one")


def _resolve_subclass(spec: ForgetSpec, bundle: DatasetBundle) -> int:
    if bundle.coarse_classes is None:
        raise DataError(
            f"forget spec {spec.text!r} needs superclass labels, which dataset {bundle.name!r} "
            "does not have (sub-class forgetting works on cifar100 and fashion-mnist)"
        )
    arg = spec.subclass
    if re.fullmatch(r"\d+", arg):
        fine = int(arg)
        if fine >= bundle.num_classes:
            raise DataError(
                f"forget spec {spec.text!r}: sub-class {fine} out of range "
                f"0..{bundle.num_classes - 1}"
            )
        return fine
    names = [c.lower() for c in bundle.classes]
    if arg.lower() not in names:
        raise DataError(
            f"forget spec {spec.text!r}: no class named {arg!r} in {bundle.name}."
            f"{did_you_mean(arg.lower(), names)}"
        )
    return names.index(arg.lower())


def _index_mask(spec: ForgetSpec, n_train: int) -> np.ndarray:
    """The training samples an `indices:FILE` spec forgets, as a mask; DataError for a bad file."""
    idx = read_index_file(spec.path)
    if idx.max() >= n_train:
        raise DataError(
            f"index file {spec.path!r} has index {int(idx.max())}; the training set has "
            f"{n_train} samples (indices 0..{n_train - 1})"
        )
    if len(np.unique(idx)) != len(idx):
        raise DataError(f"index file {spec.path!r} lists some indices more than once")
    if len(idx) >= n_train:
        raise DataError(f"index file {spec.path!r} forgets every training sample; keep some")
    forget_mask = np.zeros(n_train, dtype=bool)
    forget_mask[idx] = True
    return forget_mask


def resolve_manifest(spec: ForgetSpec | str, bundle: DatasetBundle, seed: int = 0,
                     holdout: np.ndarray | None = None) -> Manifest:
    """Resolve a forget spec on a dataset into a manifest; the seed draws random subsets.

    `holdout` (train indices no model of the run trains on, `draw_holdout`) stays out of both
    forget and retain: class and random specs pick among the other samples; an index file may
    name held-out samples (they are forgotten, and leave the holdout).
    """
    from ..config import check_seed

    seed = check_seed(seed, "split seed")
    held = _check_holdout(holdout, len(bundle.y_train))
    free = np.ones(len(bundle.y_train), dtype=bool)  # not held out
    if held is not None:
        free[held] = False
    if isinstance(spec, str):
        spec = parse_forget_spec(spec)
    n_train = len(bundle.y_train)
    label_space: LabelSpace = "fine"
    forgotten: list[int] = []
    test_rem = test_fgt = None
    y_tr = bundle.y_train.numpy()
    y_te = bundle.y_test.numpy()
    if spec.kind == "class":
        _check_classes(spec, bundle.num_classes)
        forgotten = list(spec.classes)
        forget_mask = np.isin(y_tr, forgotten) & free
        test_mask = np.isin(y_te, forgotten)
        test_rem, test_fgt = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    elif spec.kind == "subclass":
        fine = _resolve_subclass(spec, bundle)
        label_space = "coarse"
        forgotten = [fine]
        forget_mask = (y_tr == fine) & free
        test_mask = y_te == fine
        test_rem, test_fgt = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    elif spec.kind == "random":
        pool = np.flatnonzero(free)  # all of 0..n-1 without a holdout: the draw of older runs
        k = spec.count if spec.count is not None else int(round(spec.fraction * len(pool)))  # type: ignore[operator]
        if not 1 <= k < len(pool):
            raise DataError(
                f"forget spec {spec.text!r} selects {k} of {len(pool)} training samples"
                f"{' outside the holdout' if held is not None else ''}; choose between 1 and {len(pool) - 1}"
            )
        rng = np.random.default_rng(seed)
        chosen = pool[rng.choice(len(pool), size=k, replace=False)]
        forget_mask = np.zeros(n_train, dtype=bool)
        forget_mask[chosen] = True
    else:  # indices
        forget_mask = _index_mask(spec, n_train)
    if held is not None:  # a forgotten sample leaves the holdout too
        held = held[~forget_mask[held]]
        free = ~forget_mask.copy()
        free[held] = False
    else:
        free = ~forget_mask
    forget_idx = np.flatnonzero(forget_mask).astype(np.int64)
    if forget_idx.size == 0:
        raise DataError(f"forget spec {spec.text!r} selects no training sample on {bundle.name}")
    m = Manifest(
        dataset=bundle.name, spec=spec.text, kind=spec.kind, seed=int(seed),
        label_space=label_space, num_classes=bundle.num_classes_in(label_space),
        forgotten_classes=forgotten,
        forget=forget_idx, retain=np.flatnonzero(free).astype(np.int64),
        test_remaining=None if test_rem is None else test_rem.astype(np.int64),
        test_forgotten=None if test_fgt is None else test_fgt.astype(np.int64),
        holdout=held if held is not None and len(held) else None,
    )
    m.hash = m.compute_hash()
    return m
