"""Where a default MU-Mis step (update=last) spends its time on the ResNet, and cheaper steps.

Usage:
    python benchmarks/step_profile.py [--threads 1] [--repeats 10] [--model resnet18-w16] [--profile]

Times, interleaved on the same model and batch of 128 (median of `--repeats`):
- `ce`: a cross-entropy step (forward + backward to every weight), the unit;
- `default`: today's step, `MuMis._loss` then the gradient of the last layer's weights (double
  backward through the whole network, every backbone weight still requiring grad);
- `frozen`: the same with the backbone's weights set to requires_grad=False for the run;
- `folded`: frozen, and every eval-mode BatchNorm folded into the conv before it (exact while
  the backbone does not move: an eval-mode BatchNorm is a per-channel affine map);
- `affine`: frozen, and every eval-mode BatchNorm replaced by the per-channel affine map it
  computes (x * scale + shift as plain tensor ops; no conv matched or changed);
- `folded_fwd`: folded, and the weight gradient in closed form instead of a double backward:
  with only the classifier W moving, f_k = W_k . h(x) + b_k, so dS_k^2/dW_k = 2 J_h(x) g_k with
  g_k = J_h(x)^T W_k the input gradient: two plain backward passes to the input (no graph) and
  one forward-mode pass (Jacobian-vector products of the features along g_c and g_c', as one
  batch of 2B).
Each prototype's gradient is checked against `default`'s (relative error printed). `--profile`
prints torch.profiler's top operators of one `default` and one `folded` step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.func
from torch import nn

from mumis.functional import norms, selected_logit_gradients
from mumis.functional.batchnorm import batchnorm_as_affine as affine_batchnorm  # the library's, since 12-01
from mumis.functional.batchnorm import last_layer
from mumis.methods.mumis import MuMis
from mumis.models import build_model

SHAPES = {"cnn": (1, 28, 28), "mlp": (1, 8, 8), "resnet18-w16": (1, 28, 28)}
BUILD = {"resnet18-w16": ("resnet18", {"width": 16})}


def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, str, nn.Module]]:
    """(conv, name of the BatchNorm in its parent, parent) for each conv whose output goes straight
    into an eval-mode BatchNorm, found on one forward (the output tensor is the BatchNorm's input)."""
    out_of: dict[int, nn.Module] = {}
    keep: list[torch.Tensor] = []
    pairs: dict[nn.Module, nn.Module] = {}

    def after(mod: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        out_of[id(out)] = mod
        keep.append(out)

    def before(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        src = out_of.get(id(inp[0]))
        if isinstance(src, nn.Conv2d):
            pairs[mod] = src

    hs = [m.register_forward_hook(after) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hs += [m.register_forward_pre_hook(before) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if child in pairs:
                found.append((pairs[child], name, parent))
    return found


@torch.no_grad()
def fold_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy with every conv -> eval-mode BatchNorm pair replaced by one conv (with a bias)."""
    folded = copy.deepcopy(model).eval()
    for conv, name, parent in conv_bn_pairs(folded, x):
        bn = getattr(parent, name)
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()  # (C,)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        setattr(parent, name, nn.Identity())
    return folded


def freeze_backbone(model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
    """requires_grad=False on every weight but the last layer's; returns the last layer's."""
    keep = list(last_layer(model, x).parameters(recurse=False))
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in keep))
    return keep


def closed_form_grad(model: nn.Module, layer: nn.Linear, x: torch.Tensor, c: torch.Tensor,
                     ci: torch.Tensor) -> list[torch.Tensor]:
    """d/d(W, b) of mean_i [S_c(x_i)^2 - S_c'(x_i)^2] (no cap) without a double backward."""
    feats: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0]))
    xg = x.detach().requires_grad_(True)
    logits = model(xg)
    handle.remove()
    g_t = selected_logit_gradients(logits, xg, c, retain_graph=True)  # (B, ...) = J^T W_c
    g_i = selected_logit_gradients(logits, xg, ci, retain_graph=False)

    def features(z: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        h = layer.register_forward_pre_hook(lambda _m, inp: out.append(inp[0]))
        try:
            model(z)
        finally:
            h.remove()
        return out[0].flatten(1)

    x2 = torch.cat([x, x]).detach()
    _, jv = torch.func.jvp(features, (x2,), (torch.cat([g_t, g_i]).detach(),))  # (2B, D): J g
    b = len(c)
    grad_w = torch.zeros_like(layer.weight)
    grad_w.index_add_(0, c, 2.0 * jv[:b] / b)
    grad_w.index_add_(0, ci, -2.0 * jv[b:] / b)
    return [grad_w, torch.zeros_like(layer.bias)]


def _grad(loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
    """Gradients with zeros where a parameter is unused (the classifier's bias never enters S_k)."""
    got = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, got, strict=True)]


def run(name: str, threads: int, repeats: int, profile: bool) -> None:
    torch.set_num_threads(threads)
    shape = SHAPES[name]
    arch, options = BUILD.get(name, (name, {}))
    base = build_model(arch, input_shape=shape, num_classes=10, mean=[0.5] * shape[0], std=[0.25] * shape[0],
                       seed=0, **options).eval()
    with torch.no_grad():  # running statistics away from (0, 1), as in a trained model
        for m in base.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(128, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(1))
    shift = torch.randint(1, 10, (128,), generator=torch.Generator().manual_seed(2))
    ci = (y + shift) % 10
    algo = MuMis(irrelevant_cap=None)
    all_params = list(base.parameters())

    frozen = copy.deepcopy(base)
    last_frozen = freeze_backbone(frozen, x[:2])
    folded = fold_batchnorm(base, x[:2])
    affine = affine_batchnorm(base)
    last_affine = freeze_backbone(affine, x[:2])
    last_folded = freeze_backbone(folded, x[:2])
    layer_folded = last_layer(folded, x[:2])
    last_base = list(last_layer(base, x[:2]).parameters(recurse=False))

    def loss_fixed_irrelevant(model: nn.Module) -> torch.Tensor:  # MuMis._loss with a given c'
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        s_t = norms(selected_logit_gradients(logits, xg, y, create_graph=True), "squared")
        s_i = norms(selected_logit_gradients(logits, xg, ci, create_graph=True), "squared")
        return (s_t - s_i).mean()

    def default() -> list[torch.Tensor]:
        return _grad(loss_fixed_irrelevant(base), last_base)

    def mumis_loss() -> list[torch.Tensor]:  # the library's own _loss (random c'), for the timing
        g = torch.Generator().manual_seed(3)
        return _grad(algo._loss(base, x, y, None, 10, g), last_base)

    def frozen_step() -> list[torch.Tensor]:
        return _grad(loss_fixed_irrelevant(frozen), last_frozen)

    def folded_step() -> list[torch.Tensor]:
        return _grad(loss_fixed_irrelevant(folded), last_folded)

    def affine_step() -> list[torch.Tensor]:
        return _grad(loss_fixed_irrelevant(affine), last_affine)

    def folded_fwd() -> list[torch.Tensor]:
        return closed_form_grad(folded, layer_folded, x, y, ci)

    def ce() -> None:
        torch.autograd.grad(nn.functional.cross_entropy(base(x), y), all_params)

    ref = default()
    for label, fn in (("frozen", frozen_step), ("affine", affine_step), ("folded", folded_step),
                      ("folded_fwd", folded_fwd)):
        got = fn()
        err = max(float((a - b).norm() / b.norm().clamp_min(1e-30)) for a, b in zip(got, ref, strict=True)
                  if b.norm() > 0)
        print(f"{name}: {label} gradient vs default, max relative error {err:.1e}")
    fns = {"ce": ce, "default": default, "mumis _loss": mumis_loss, "frozen": frozen_step,
           "affine": affine_step, "folded": folded_step, "folded_fwd": folded_fwd}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name}, {threads} thread(s), batch 128, median of {repeats}\n\n| step | ms | / CE step |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {1e3 * v:.1f} | {v / med['ce']:.2f}x |")
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        for label, fn in (("default", default), ("folded", folded_step), ("ce", ce)):
            with prof(activities=[ProfilerActivity.CPU]) as p:
                fn()
            print(f"\n## profile: {label}\n")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--model", default="resnet18-w16")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for name in args.model.split(","):
        run(name, args.threads, args.repeats, args.profile)


if __name__ == "__main__":
    main()
