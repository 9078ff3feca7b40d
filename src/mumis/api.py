"""The front door: resolve names, validate, dispatch. No algorithm code lives here."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .caller_state import preserved_state
from .config import check_seed, config_to_dict
from .exceptions import ConfigError, DataError
from .methods import METHODS, RunContext, UnlearningMethod
from .methods.base import check_labels
from .models.adapters import OutputKey, check_output_key, describe_key, wrap
from .models.checks import out_of_place_activations, probe_model
from .utils import make_generator, resolve_device, sync

DataLike = Dataset | DataLoader | tuple[torch.Tensor, torch.Tensor] | list


@dataclass
class UnlearnResult:
    """What `unlearn` returns."""

    model: nn.Module
    method: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    time_s: float  # wall time of the method's run only (device-synchronised)
    steps: int
    stop_reason: str
    peak_mem_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    data_used: list[str] = field(default_factory=lambda: ["forget"])  # forget / retain / holdout

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "time_s": self.time_s, "steps": self.steps,
                "stop_reason": self.stop_reason, "peak_mem_mb": self.peak_mem_mb,
                "data_used": list(self.data_used)}


def to_tensors(data: DataLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept (X, y) tensors, a Dataset of (x, y) or a DataLoader; return (X, y) tensors.

    Raises:
        DataError: anything else, an empty set, X and y of different lengths, labels that are
            not a 1-D integer tensor, inputs that are not floating point or hold inf / NaN.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, (tuple, list)):
        kinds = ", ".join(type(t).__name__ for t in data[:4])
        raise DataError(f"{what} must be an (X, y) pair of torch tensors; got a {type(data).__name__} of "
                        f"{len(data)} ({kinds}): pass (torch.as_tensor(X), torch.as_tensor(y))")
    elif isinstance(data, (DataLoader, Dataset)):
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=512, shuffle=False)
        xs, ys = [], []
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise DataError(f"{what} data must yield (x, y) pairs; got {type(batch).__name__}")
            try:
                xs.append(torch.as_tensor(batch[0]))
                ys.append(torch.as_tensor(batch[1]))
            except (TypeError, ValueError, RuntimeError) as e:
                raise DataError(f"{what} data yields (x, y) that are not tensors or arrays ({e})") from None
        if not xs:
            raise DataError(f"the {what} set is empty; give at least one sample")
        x, y = torch.cat(xs), torch.cat(ys)
    else:
        raise DataError(
            f"{what} must be a Dataset, a DataLoader or an (X, y) pair of tensors; got {type(data).__name__}"
        )
    if x.dim() == 0:
        raise DataError(f"{what} inputs X are a single number; expected (N, ...) with one sample per row")
    if len(x) == 0:
        raise DataError(f"the {what} set is empty; give at least one sample")
    if y.dim() != 1:
        raise DataError(f"{what} labels y have shape {tuple(y.shape)}; expected ({len(x)},) class indices "
                        "(for one-hot labels pass y.argmax(1))")
    if len(x) != len(y):
        raise DataError(f"{what}: X has {len(x)} samples but y has {len(y)}; give one label per sample")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"{what} labels must be integers, got {y.dtype}; pass y.long()")
    if x.dim() < 2:
        raise DataError(f"{what} inputs X have shape {tuple(x.shape)}; expected (N, ...) with one "
                        "sample per row, e.g. (N, C, H, W) images")
    if not x.dtype.is_floating_point:
        raise DataError(f"{what} inputs must be floating point (e.g. pixels in [0, 1]); got {x.dtype}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = int(bad.reshape(len(x), -1).any(dim=1).nonzero()[0])
        raise DataError(f"{what} inputs hold {int(bad.sum())} inf or NaN values (first in sample {first}); "
                        "clean or drop those samples")
    return x, y.long()


def check_input_dtype(model: nn.Module, x: torch.Tensor, what: str) -> None:
    """DataError when the inputs' float type is not the model's (float64 arrays from numpy are
    the usual case), naming both and the fix."""
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    if p is not None and x.dtype != p.dtype:
        raise DataError(f"{what} inputs are {x.dtype} but the model's weights are {p.dtype}; convert the "
                        f"inputs with X.to({p.dtype}) (numpy arrays are float64: torch.as_tensor(X).float())")


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """Peak memory of the block: CUDA allocator peak, or the process's peak RSS on Linux CPUs."""
    out: dict[str, float | None] = {"mb": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        out["mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    clear = Path("/proc/self/clear_refs")
    can_reset = False
    with contextlib.suppress(OSError):
        clear.write_text("5")  # resets the kernel's peak-RSS counter (VmHWM) for this process
        can_reset = True
    yield out
    if can_reset:
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out["mb"] = int(line.split()[1]) / 1024
                    break


def get_method(name: str) -> type[UnlearningMethod]:
    """The method class registered under `name` (ConfigError with did-you-mean otherwise)."""
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


def unlearn(
    model: nn.Module,
    forget: DataLike,
    method: str = "mumis",
    *,
    retain: DataLike | None = None,
    holdout: DataLike | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    inplace: bool = False,
    progress: bool = False,
    output_key: OutputKey | None = None,
    **config: Any,
) -> UnlearnResult:
    """Remove what `model` learned from `forget` with an unlearning method.

    For a method that differentiates input gradients (`needs_double_backward`: MU-Mis),
    activation modules built with `inplace=True` (torchvision's ReLU) run out-of-place during
    the call and get their flag back afterwards: the returned model has the caller's
    architecture exactly (`result.extra["inplace_converted"]` names the modules switched).

    Args:
        model: a classifier returning logits (N, K), or an output holding them (see
            `output_key`); left untouched unless `inplace=True`.
        forget: the data to forget: (X, y) tensors, a Dataset or a DataLoader.
        method: a registered method name (`mumis.list_methods()`).
        retain: remaining data, only for methods that declare they need it.
        holdout: unseen samples of the training distribution (no model trained on them), only
            for methods that declare `needs_holdout` (MU-Mis: see docs/mumis.md).
        seed: seeds every random choice of the method (deterministic on CPU).
        device: 'auto' (CUDA when available), 'cpu' or 'cuda[:N]'.
        inplace: change and return the caller's model instead of a copy.
        progress: log progress (history rows) while running.
        output_key: where the logits are when forward() returns more than a tensor: an int
            index into a tuple, a dict key or attribute name, or a function `output -> logits`.
            Methods then see only the logits; the returned model is still the caller's class.
            An output object with a `.logits` tensor (Hugging Face style) needs no key.
        **config: the method's settings (see `mumis methods NAME`); unknown keys are an error.
    Returns:
        UnlearnResult with the unlearned model, resolved config, history, time_s, steps, stop_reason,
        data_used (which of forget / retain / holdout the method read);
        `extra` adds `inplace_converted` and `output_key` when the model needed them.
    Raises:
        ConfigError: unknown method or setting, bad value, retain data or a holdout given to (or
            missing for) a method, a bad output_key. DataError: empty forget set, bad labels.
            ModelError: the inputs do not fit the model, its output holds no (N, K) logits (or
            K does not cover the labels), or it cannot do what the method needs (e.g. double
            backward through in-place operations written in forward()).
    """
    cls = get_method(method)
    algo = cls(**config)
    _check_data_use(cls, method, retain, holdout)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_output_key(output_key)
    seed = check_seed(seed)
    dev = resolve_device(device)
    data = _inputs(model, forget=forget, retain=retain, holdout=holdout)
    target = model if inplace else copy.deepcopy(model)
    switched: contextlib.AbstractContextManager[list[str]] = (
        out_of_place_activations(target) if cls.needs_double_backward else contextlib.nullcontext([]))
    # the caller's model (inplace) gets its device, modes, flags and hooks back, also on error
    with preserved_state(target, device=True) if inplace else contextlib.nullcontext(), switched as converted:
        target.to(dev)
        target.eval()  # BatchNorm on running statistics, no dropout: samples do not interact
        k, key = _probe(target, cls, data, output_key, dev)
        runner = wrap(target, key)  # methods see plain logits; `target` stays the user's model
        ctx = _context(data, k, seed, dev, progress)
        out, elapsed, peak = _run(algo, runner, ctx, dev)
        if not inplace:  # the copy gets the caller's modes (the caller's model: _preserved_state)
            for m_new, m_old in zip(target.modules(), model.modules(), strict=True):
                m_new.train(m_old.training)
    stop_reason, extra = _finish(target, out, method, converted, key)
    return UnlearnResult(
        model=target, method=method, config=config_to_dict(algo.config), history=out.history,
        time_s=elapsed, steps=out.steps, stop_reason=stop_reason, peak_mem_mb=peak, extra=extra,
        data_used=cls.data_used(retain="retain" in data, holdout="holdout" in data),
    )


def _check_data_use(cls: type[UnlearningMethod], method: str, retain: DataLike | None,
                    holdout: DataLike | None) -> None:
    """ConfigError when retain data or a holdout goes to a method that does not declare it, or
    is missing for one that needs it."""
    if cls.requires_retain and retain is None:
        raise ConfigError(f"method {method!r} needs remaining data; pass retain=(X, y)")
    if not cls.requires_retain and retain is not None:
        raise ConfigError(
            f"method {method!r} is remaining-data-free and must not be handed retain data; drop retain="
        )
    _check_holdout_use(cls, method, holdout)


def _inputs(model: nn.Module, forget: DataLike, **sets: DataLike | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The forget set and the other sets given, as checked (X, y) tensors of the model's float type."""
    data = {"forget": to_tensors(forget, "forget")}
    data.update({name: to_tensors(d, name) for name, d in sets.items() if d is not None})
    for name, (x, _) in data.items():
        check_input_dtype(model, x, name)
    return data


def _probe(target: nn.Module, cls: type[UnlearningMethod], data: dict[str, tuple[torch.Tensor, torch.Tensor]],
           output_key: OutputKey | None, dev: torch.device) -> tuple[int, OutputKey | None]:
    """(K, the output key) after checking that every data set fits the model and its labels lie
    in 0..K-1, and that the model differentiates twice when the method needs it."""
    fx, fy = data["forget"]
    probe, key = probe_model(target, fx, output_key=output_key, what="forget", labels=fy)
    k = int(probe.shape[1])
    check_labels(fy, k, "forget")
    for name, (x, y) in data.items():
        if name != "forget":
            probe_model(target, x, output_key=key, what=name, labels=y)
            check_labels(y, k, name)
    if cls.needs_double_backward:
        from .models.checks import check_double_backward

        check_double_backward(target, fx[:2].to(dev), output_key=key)
    return k, key


def _context(data: dict[str, tuple[torch.Tensor, torch.Tensor]], k: int, seed: int, dev: torch.device,
             progress: bool) -> RunContext:
    """The method's RunContext: the data sets on the device, a seeded generator."""
    on = {name: (x.to(dev), y.to(dev)) for name, (x, y) in data.items()}
    return RunContext(forget=on["forget"], retain=on.get("retain"), holdout=on.get("holdout"), num_classes=k,
                      generator=make_generator(seed), device=dev, progress=progress)


def _run(algo: UnlearningMethod, runner: nn.Module, ctx: RunContext,
         dev: torch.device) -> tuple[Any, float, float | None]:
    """(the method's output, its wall time, peak memory in MB) of one timed run."""
    from .training import choose_threads, torch_threads

    # Small models on the CPU run faster on one thread (and much faster on a loaded machine);
    # the choice depends on the model and batch size only, so runs stay reproducible.
    fx = ctx.forget[0]
    batch = getattr(algo.config, "batch_size", 128) or len(fx)
    threads = choose_threads(runner, fx, batch, dev)
    with torch_threads(threads), _peak_memory(dev) as mem:
        sync(dev)
        t0 = time.perf_counter()
        out = algo.run(runner, ctx)
        sync(dev)
        elapsed = time.perf_counter() - t0
    return out, elapsed, mem["mb"]


def _finish(target: nn.Module, out: Any, method: str, converted: list[str],
            key: OutputKey | None) -> tuple[str, dict[str, Any]]:
    """(stop_reason, extra) of a finished run; inf / NaN weights are said there and warned of."""
    stop_reason = out.stop_reason
    bad = sum(int((~torch.isfinite(p)).sum()) for p in target.parameters())
    if bad:
        # Never hand back a broken model silently: the run's result says so, and so does a warning.
        stop_reason += f"; {bad} non-finite weights: the method diverged, do not use this model"
        warnings.warn(f"{method}: {bad} weights are inf or NaN after unlearning (the method "
                      "diverged); lower its learning rate", RuntimeWarning, stacklevel=3)
    extra = dict(out.extra)
    if converted:
        extra["inplace_converted"] = list(converted)
    if key is not None:
        extra["output_key"] = describe_key(key)
    return stop_reason, extra


def _check_holdout_use(cls: type[UnlearningMethod], method: str, holdout: DataLike | None) -> None:
    """ConfigError when a holdout is handed to a method that does not declare one, or is
    missing for a method that requires it."""
    if cls.needs_holdout == "required" and holdout is None:
        raise ConfigError(f"method {method!r} needs a holdout (samples no model trained on); pass "
                          "holdout=(X, y), or train the run with `mumis train --holdout 0.05`")
    if cls.needs_holdout == "no" and holdout is not None:
        raise ConfigError(f"method {method!r} does not use a holdout; drop holdout= (methods that do: "
                          f"{', '.join(n for n in list_methods() if get_method(n).needs_holdout != 'no')})")
