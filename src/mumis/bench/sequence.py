"""The sequential bench scenario: T deletion requests in a row, each against its own retrain.

A mapping `{sequence: [SPEC, ...], name: NAME}` in a bench's `scenarios` (`SequenceScenario`).
For each (dataset, model, seed, method) request 1 unlearns the original and request k continues
from request k-1's run directory (a chain, `mumis.runs.chain`: the same as `mumis unlearn
--checkpoint` on an unlearning run). Request k is drawn with split seed `split_seed + k - 1`.

Layout, beside the other scenarios' (see `mumis.bench.runner`):
```
DIR/models/<dataset>/<model>/s<seed>/retrain-seq-<name>-r<k>/   retrained without requests 1..k
                                     (request 1's: `retrain-<spec>/`, a plain scenario's oracle)
DIR/runs/<dataset>__<model>__seq-<name>__r<k>__<label>__s<seed>/   request k's unlearning run
DIR/records/<same id>.json                                       its record
DIR/records/<dataset>__<model>__seq-<name>__r<k>__retrain__s<seed>.json   the union's retrain
```
The reference of request k is trained once per seed (`mumis train --forget-chain` of request
k-1's run and `--forget` request k: the union so far; which method's chain gives it does not
matter, every chain forgets the same samples) and every method's request k is evaluated
against it with the bench's metrics. Every record of a request carries a `sequence` block: the
request index, its spec and split seed, its samples (`num_forget`), those new to the chain
(`num_new`) and already forgotten (`overlap`), everything forgotten so far (`num_forgotten`),
and `earlier`: the accuracy of this model on each earlier request's samples (its forgotten
classes' test samples for a class-wise request, else its forget samples), the rebound of what
was forgotten before. `--resume` and `--only` work on these cells as on the others; a selected
request k also runs the requests before it whose run directories are missing. `retrain_seeds`
does not apply here: each request has one retrained model (no floor rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import REFERENCE_LABEL, BenchConfig, MethodEntry, SequenceScenario, cell_id, key_hash, slug
from .runner import (
    RECORD_FORMAT,
    BenchResult,
    _check_record,
    _common_key,
    _complete,
    _ensure_model,
    _kind,
    _label_space,
    _now,
    _record_path,
    _trained,
)

if TYPE_CHECKING:
    from torch import nn

    from ..data import DatasetBundle, Manifest
    from ..runs import RunRecord, Scenario


@dataclass(frozen=True)
class SeqCell:
    """Request `k` (from 1) of sequence `seq` for one method and seed."""

    dataset: str
    model: str
    seed: int
    seq: SequenceScenario
    k: int
    entry: MethodEntry

    @property
    def id(self) -> str:
        return cell_id(self.dataset, self.model, self.seq.request_label(self.k), self.entry.label, self.seed)


def sequence_cells(cfg: BenchConfig) -> list[SeqCell]:
    """Every request cell of the config's sequential scenarios, in run order."""
    return [SeqCell(d, m, sd, q, k, e) for d in cfg.datasets for m in cfg.models for sd in cfg.seeds
            for q in cfg.sequences for e in cfg.methods for k in range(1, len(q.specs) + 1)]


def _base_key(cfg: BenchConfig, d: str, m: str, sd: int, q: SequenceScenario, k: int) -> dict[str, Any]:
    """What request k's models and evaluation depend on: its requests so far and their seeds
    (not `retrain_seeds`: a request has one retrained model, no floor)."""
    key = {n: v for n, v in _common_key(cfg, d, m, q.request_label(k), sd).items() if n != "floor_seeds"}
    return {**key, "sequence": list(q.specs[:k]), "split_seeds": q.split_seeds(cfg.split_seed_for(sd))[:k]}


def reference_key(cfg: BenchConfig, d: str, m: str, sd: int, q: SequenceScenario, k: int) -> str:
    return key_hash(_base_key(cfg, d, m, sd, q, k))


def cell_key(cfg: BenchConfig, c: SeqCell) -> str:
    """A request cell's key: the method's settings of every request of its chain so far."""
    e = c.entry
    return key_hash({**_base_key(cfg, c.dataset, c.model, c.seed, c.seq, c.k), "method": e.method,
                     "settings": [e.settings_for(_kind(s)) for s in c.seq.specs[: c.k]],
                     **({} if e.use_holdout else {"holdout": False})})


def run_sequences(cfg: BenchConfig, out: Path, cells: list[SeqCell], done: set[str], keys: dict[str, str],
                  res: BenchResult, say: Callable[[str], None], bar: Any) -> None:
    """Run the selected request cells (`cells`, less `done`) and write their records."""
    groups: dict[tuple[str, str, int, SequenceScenario], list[SeqCell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.model, c.seed, c.seq), []).append(c)
    for (d, m, sd, q), group in groups.items():
        refs_done = all(_check_record(_record_path(out, cell_id(d, m, q.request_label(c.k), REFERENCE_LABEL, sd)),
                                      reference_key(cfg, d, m, sd, q, c.k)) for c in group)
        if refs_done and all(c.id in done for c in group):
            continue
        _Chain(cfg, out, d, m, sd, q, res, say, bar).run(group, done, keys)


class _Chain:
    """One (dataset, model, seed, sequence): the models it shares and each method's chain."""

    def __init__(self, cfg: BenchConfig, out: Path, d: str, m: str, sd: int, q: SequenceScenario,
                 res: BenchResult, say: Callable[[str], None], bar: Any) -> None:
        self.cfg, self.out, self.d, self.m, self.sd, self.q = cfg, out, d, m, sd, q
        self.res, self.say, self.bar = res, say, bar
        self.seeds = q.split_seeds(cfg.split_seed_for(sd))
        self.base = out / "models" / slug(d) / slug(m) / f"s{sd}"
        self.space = _label_space(q.specs[0])
        self.orig_dir = self.base / f"original-{self.space}"
        self.common = {"dataset": d, "model": m, "seed": sd, "data_dir": cfg.data_dirs.get(d)}
        self.settings: dict[str, Any] = {"metrics": cfg.metrics, "seed": sd}
        self.manifests: dict[int, Manifest] = {}  # request k's manifest (the same in every chain)

    def ref_dir(self, k: int) -> Path:
        # request 1's is the plain scenario's oracle (same spec and split seed): shared with it
        return self.base / (f"retrain-{slug(self.q.specs[0])}" if k == 1 else f"retrain-{self.q.label}-r{k}")

    def run(self, group: list[SeqCell], done: set[str], keys: dict[str, str]) -> None:
        wanted: dict[str, int] = {}
        entries: dict[str, MethodEntry] = {}
        for c in group:
            wanted[c.entry.label] = max(wanted.get(c.entry.label, 0), c.k)
            entries[c.entry.label] = c.entry
        selected = {c.id for c in group}
        for label, last in wanted.items():
            e = entries[label]
            prev = self.orig_dir
            for k in range(1, last + 1):
                c = SeqCell(self.d, self.m, self.sd, self.q, k, e)
                run_dir = self.out / "runs" / c.id
                key = keys.get(c.id) or cell_key(self.cfg, c)
                finished = (c.id in done or _check_record(_record_path(self.out, c.id), key))
                # a finished request is re-run only when a later one needs its run directory
                redo = not finished or (k < last and not _complete(run_dir))
                ref_missing = not self._ref_written(k) and c.id in selected
                if not redo and not ref_missing:
                    self._remember(k, run_dir)
                    prev = run_dir
                    continue
                scenario = self._scenario(prev, k)
                if redo:
                    self._request(c, scenario, run_dir, key, counted=c.id in selected)
                prev = run_dir

    def _ref_written(self, k: int) -> bool:
        rid = cell_id(self.d, self.m, self.q.request_label(k), REFERENCE_LABEL, self.sd)
        return _check_record(_record_path(self.out, rid), reference_key(self.cfg, self.d, self.m, self.sd, self.q, k))

    def _remember(self, k: int, run_dir: Path) -> None:
        """Request k's manifest from a finished run directory (for the later requests' `earlier`)."""
        from ..data import Manifest
        from ..utils import read_json

        if k not in self.manifests and _complete(run_dir):
            self.manifests[k] = Manifest.from_dict(read_json(run_dir / "meta.json")["manifest"])

    def _scenario(self, prev: Path, k: int) -> Scenario:
        """Request k continued from `prev` (the original for k = 1), against the union's retrain;
        writes the reference's record the first time."""
        from ..runs import Scenario

        spec, seed = self.q.specs[k - 1], self.seeds[k - 1]
        if k == 1:
            _ensure_model(self.cfg, self.orig_dir, self.res, self.say, label_space=self.space,
                          split_seed=self.seeds[0], **self.common)
            _ensure_model(self.cfg, self.ref_dir(1), self.res, self.say, forget=spec, split_seed=seed,
                          **self.common)
        else:  # without the chain so far (its requests' seeds) and this request
            _ensure_model(self.cfg, self.ref_dir(k), self.res, self.say, forget=spec, forget_chain=prev,
                          split_seed=seed, **self.common)
        scenario = Scenario.load(prev, spec, reference=self.ref_dir(k), split_seed=seed,
                                 data_dir=self.cfg.data_dirs.get(self.d), device=self.cfg.device,
                                 trust_model_code=self.m, continue_chain=True)
        self.manifests.setdefault(k, scenario.manifest)
        if not self._ref_written(k):
            self._write_reference(scenario, k)
        return scenario

    def _write_reference(self, scenario: Scenario, k: int) -> None:
        assert scenario.reference is not None
        t = time.perf_counter()
        report = scenario.reference.report(scenario.splits, **self.settings)
        rec = _trained(self.ref_dir(k), REFERENCE_LABEL).evaluated(report, time.perf_counter() - t)
        rid = cell_id(self.d, self.m, self.q.request_label(k), REFERENCE_LABEL, self.sd)
        self._write(rid, reference_key(self.cfg, self.d, self.m, self.sd, self.q, k), rec, REFERENCE_LABEL,
                    "reference", self.ref_dir(k), scenario, k, scenario.reference.model())

    def _request(self, c: SeqCell, scenario: Scenario, run_dir: Path, key: str, counted: bool) -> None:
        from ..runs import evaluate_record, unlearn_scenario

        if self.bar is not None:
            self.bar.set_postfix_str(c.id, refresh=True)
        spec = self.q.specs[c.k - 1]
        done = unlearn_scenario(scenario=scenario, method=c.entry.method, settings=c.entry.settings_for(_kind(spec)),
                                out=run_dir, seed=self.sd, overwrite=True, progress=False, receipt=False,
                                use_holdout=c.entry.use_holdout)
        rec = evaluate_record(scenario, done.model, done.record, **self.settings)
        self._write(c.id, key, rec, c.entry.label, "method", run_dir, scenario, c.k, done.model)
        gp = rec.gap("gap_paper")
        self.say(f"{c.id}: gap_paper {gp:.2f}, {rec.steps} steps, {rec.time_s:.2f} s"
                 if isinstance(gp, (int, float)) else f"{c.id}: done in {rec.time_s:.2f} s")
        if counted:
            self.res.ran += 1
            if self.bar is not None:
                self.bar.update(1)

    def _write(self, cell: str, key: str, record: RunRecord, label: str, role: str, run: Path,
               scenario: Scenario, k: int, model: nn.Module) -> None:
        from ..utils import atomic_write_json

        q, man = self.q, scenario.manifest
        head = {"format": RECORD_FORMAT, "dataset": self.d, "model": self.m, "scenario": q.request_label(k),
                "seed": self.sd, "split_seed": self.seeds[k - 1], "label_space": self.space, "cell": cell,
                "key": key}
        block = {"name": q.name, "label": q.label, "request": k, "requests": len(q.specs), "spec": q.specs[k - 1],
                 "split_seed": self.seeds[k - 1], "num_forget": int(len(man.forget)) + int(scenario.overlap),
                 "num_new": int(len(man.forget)), "overlap": int(scenario.overlap),
                 "num_forgotten": int(len(man.union)),
                 "earlier": earlier_accuracies(model, scenario.bundle, [self.manifests[j] for j in range(1, k)],
                                               scenario.device)}
        rec = record.bench_record(head, label=label, role=role, run_dir=str(run.relative_to(self.out)),
                                  created=_now())
        atomic_write_json(_record_path(self.out, cell), {**rec, "sequence": block})


def earlier_accuracies(model: nn.Module, bundle: DatasetBundle, manifests: list[Manifest],
                       device: Any) -> list[dict[str, Any]]:
    """The accuracy of `model` on each earlier request's samples: the test samples of its
    forgotten classes for a class-wise request (as `test_forgotten_acc`), else the training
    samples it forgot (as `forget_acc`)."""
    from ..data import make_splits
    from ..metrics.accuracy import compute_logits, logits_accuracy

    out = []
    for j, man in enumerate(manifests, 1):
        splits = make_splits(bundle, man)
        on = "test_forgotten" if splits.test_forgotten is not None else "forget"
        x, y = splits.test_forgotten if splits.test_forgotten is not None else splits.forget
        acc = logits_accuracy(compute_logits(model, x, device=device), y)
        out.append({"request": j, "spec": man.spec, "on": on, "n": int(len(y)), "acc": acc})
    return out


__all__ = ["SeqCell", "cell_key", "earlier_accuracies", "reference_key", "run_sequences", "sequence_cells"]
