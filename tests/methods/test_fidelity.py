"""Each baseline against its published update rule (issue 17).

A tiny fixed linear model (logits = W x + b), fixed data, a few steps. The expected weights are
computed here, by hand, from the official code's update rule (which file is named per test):
plain tensor ops and autograd on a hand-written loss, never the method's own functions. Where
the method draws random numbers (batch order, noise, random labels), the reference draws them
from a generator seeded as `mumis.unlearn` seeds its own, in the order the loop draws them
(`batches()` draws one permutation per pass, then the loss draws its numbers per batch).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mumis

D, K = 4, 3  # input size (a 1x2x2 image), classes
SEED = 0


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 2, 2, generator=g), torch.randint(0, K, (n,), generator=g)


def _start() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    return torch.randn(K, D, generator=g), 0.1 * torch.randn(K, generator=g)


def _model() -> nn.Module:
    w, b = _start()
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, K))
    with torch.no_grad():
        model[1].weight.copy_(w)
        model[1].bias.copy_(b)
    return model.eval()


def _f(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1) @ p[0].T + p[1]


def _params() -> list[torch.Tensor]:
    return [t.clone().requires_grad_(True) for t in _start()]


class _SGD:
    """torch.optim.SGD's rule written out: d = g + wd p; buf = d (first) or m buf + d; p -= lr buf."""

    def __init__(self, momentum: float = 0.0, wd: float = 0.0) -> None:
        self.m, self.wd, self.buf = momentum, wd, None

    def step(self, p: list[torch.Tensor], g: list[torch.Tensor], lr: float) -> None:
        d = [gi + self.wd * pi.detach() for pi, gi in zip(p, g, strict=True)]
        if self.m:
            self.buf = d if self.buf is None else [self.m * b + di for b, di in zip(self.buf, d, strict=True)]
            d = self.buf
        with torch.no_grad():
            for pi, di in zip(p, d, strict=True):
                pi -= lr * di


def _grads(loss: torch.Tensor, p: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, p))


def _check(res: mumis.UnlearnResult, p: list[torch.Tensor]) -> None:
    lin = res.model[1]
    torch.testing.assert_close(lin.weight.detach(), p[0].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lin.bias.detach(), p[1].detach(), rtol=1e-5, atol=1e-6)


def _kl(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    """sum_k p_t (log p_t - log p_s) at temperature temp, times temp^2, mean over the batch."""
    pt = torch.softmax(t / temp, 1)
    return (pt * (torch.log(pt) - torch.log_softmax(s / temp, 1))).sum() * temp**2 / len(s)


# --------------------------------------------------------------------------- NG+
def test_neggrad_plus_plain_sgd_on_alpha_retain_minus_forget() -> None:
    """meghdadk/SCRUB `train_negrad`: plain SGD (no momentum, no decay) on a CE(r) - (1-a) CE(f)."""
    assert mumis.get_method("neggrad_plus").defaults()["momentum"] == 0.0
    assert mumis.get_method("neggrad_plus").defaults()["weight_decay"] == 0.0
    (fx, fy), (rx, ry) = _data(4, 1), _data(6, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="neggrad_plus", retain=(rx, ry), seed=SEED, device="cpu",
                        alpha=0.9, lr=0.1, epochs=3, batch_size=0)
    p, opt = _params(), _SGD()
    for _ in range(3):
        opt.step(p, _grads(0.9 * F.cross_entropy(_f(p, rx), ry) - 0.1 * F.cross_entropy(_f(p, fx), fy), p), 0.1)
    _check(res, p)


# --------------------------------------------------------------------------- l1-sparse
def test_l1_sparse_decaying_l1_with_momentum_and_decay_5e4() -> None:
    """Unlearn-Sparse `FT.py` with l1: CE(r) + alpha (1 - t/T) ||theta||_1; SGD m 0.9, wd 5e-4."""
    assert mumis.get_method("l1_sparse").defaults()["weight_decay"] == 5e-4
    (fx, fy), (rx, ry) = _data(3, 1), _data(6, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="l1_sparse", retain=(rx, ry), seed=SEED, device="cpu",
                        alpha=0.01, lr=0.05, epochs=3, batch_size=0)
    p, opt = _params(), _SGD(0.9, 5e-4)
    for t in range(3):
        l1 = p[0].abs().sum() + p[1].abs().sum()
        opt.step(p, _grads(F.cross_entropy(_f(p, rx), ry) + 0.01 * (1 - t / 3) * l1, p), 0.05)
    _check(res, p)


# --------------------------------------------------------------------------- SCRUB
def test_scrub_max_then_min_steps_with_official_loaders_and_decay() -> None:
    """SCRUB notebook + `train_distill`: per epoch a max pass (-KL on forget, first msteps epochs),
    then a min pass (gamma CE + alpha KL on retain); one SGD (m 0.9, wd 5e-4) for both; lr x0.1
    for every decay epoch already passed (`sgda_adjust_learning_rate`, 1-based epochs)."""
    d = mumis.get_method("scrub").defaults()
    assert (d["forget_batch_size"], d["batch_size"], d["lr"], d["epochs"]) == (512, 256, 5e-4, 3)
    (fx, fy), (rx, ry) = _data(5, 1), _data(7, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="scrub", retain=(rx, ry), seed=SEED, device="cpu",
                        lr=0.2, epochs=3, max_epochs=2, lr_decay_epochs=[2], gamma=0.9, alpha=0.5)
    teacher, p, opt = [t.detach() for t in _start()], _params(), _SGD(0.9, 5e-4)
    for epoch in (1, 2, 3):
        lr = 0.2 * 0.1 ** int(epoch > 2)
        if epoch <= 2:
            opt.step(p, _grads(-_kl(_f(p, fx), _f(teacher, fx), 4.0), p), lr)
        s = _f(p, rx)
        opt.step(p, _grads(0.9 * F.cross_entropy(s, ry) + 0.5 * _kl(s, _f(teacher, rx), 4.0), p), lr)
    _check(res, p)


# --------------------------------------------------------------------------- JiT
def test_jit_summed_loss_accumulated_gradients_no_grad_through_noisy_copy() -> None:
    """`lipschitz.py::modify_weight`: per batch, loss = sum over the batch of the mean over N
    copies of ||f(x) - f(x')|| / ||x - x'||, x' = clamp(x + sigma eps, batch min, batch max),
    f(x') without gradient; plain SGD whose gradients are never zeroed; one pass."""
    d = mumis.get_method("jit").defaults()
    assert (d["lr"], d["noise_std"], d["epochs"]) == (3e-4, 0.5, 1)
    fx, fy = _data(6, 1)
    n, sigma, lr = 2, 0.5, 0.05
    res = mumis.unlearn(_model(), (fx, fy), method="jit", seed=SEED, device="cpu", lr=lr, n_samples=n,
                        noise_std=sigma, batch_size=3)
    g = torch.Generator().manual_seed(SEED)
    p, acc = _params(), None
    for idx in torch.randperm(6, generator=g).split(3):
        x = fx[idx].flatten(1)
        noise = torch.randn((n, *x.shape), generator=g)
        loss = torch.zeros(())
        for i in range(n):
            x2 = torch.clamp(x + sigma * noise[i], x.min(), x.max())
            with torch.no_grad():
                out2 = x2 @ p[0].T + p[1]
            loss = loss + ((x @ p[0].T + p[1] - out2).norm(dim=1) / (x - x2).norm(dim=1)).sum()
        grads = _grads(loss / n, p)
        acc = grads if acc is None else [a + gi for a, gi in zip(acc, grads, strict=True)]
        with torch.no_grad():
            for pi, a in zip(p, acc, strict=True):
                pi -= lr * a
    _check(res, p)


# --------------------------------------------------------------------------- Boundary Shrink
def test_boundary_shrink_fgsm_argmax_labels_true_label_kept() -> None:
    """Boundary-Unlearning-Code `boundary_shrink`: FGSM on the original (bound), clipped to
    [0, 1] and rounded to 1/255, label = argmax there (the true one where no boundary is
    crossed); CE on the clean samples towards those labels, SGD with momentum 0.9."""
    d = mumis.get_method("boundary_shrink").defaults()
    assert (d["lr"], d["bound"], d["momentum"], d["exclude_true_label"]) == (1e-5, 0.1, 0.9, False)
    w0 = [t.detach() for t in _start()]
    fx = _data(8, 1)[0]
    fy = _f(w0, fx).argmax(1)  # samples the original classifies right (here all one class)
    res = mumis.unlearn(_model(), (fx, fy), method="boundary_shrink", seed=SEED, device="cpu", lr=0.1,
                        epochs=2, batch_size=0, bound=0.2)
    x = fx.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(F.cross_entropy(_f(w0, x), fy), x)
    x_adv = torch.round(torch.clamp(fx + 0.2 * gx.sign(), 0, 1) * 255) / 255
    y_nb = _f(w0, x_adv).argmax(1)
    kept = int((y_nb == fy).sum())
    assert 0 < kept < len(fy), "the case must have both crossed and uncrossed samples"
    assert res.extra["kept_true_label"] == kept
    p, opt = _params(), _SGD(0.9)
    for _ in range(2):
        opt.step(p, _grads(F.cross_entropy(_f(p, fx), y_nb), p), 0.1)
    _check(res, p)


# --------------------------------------------------------------------------- SSD
def _fisher(p: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, bs: int) -> list[torch.Tensor]:
    parts = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)]
    tot = [torch.zeros_like(t) for t in p]
    for xb, yb in parts:
        for t, gi in zip(tot, _grads(F.cross_entropy(_f(p, xb), yb), p), strict=True):
            t += gi**2
    return [t / len(parts) for t in tot]


def test_ssd_importances_on_class_sorted_retain_then_forget() -> None:
    """`ssd.py` ParameterPerturber: I = mean over consecutive batches of squared gradients, on
    D (retain sorted by class, then forget) and on the forget set; parameters with
    I_f > alpha I_D are multiplied by min(lambda I_D / I_f, 1)."""
    (fx, fy), (rx, ry) = _data(4, 1), _data(9, 2)
    fy = torch.zeros_like(fy)  # a forgotten class
    alpha, lam, bs = 1.5, 1.0, 3
    res = mumis.unlearn(_model(), (fx, fy), method="ssd", retain=(rx, ry), seed=SEED, device="cpu",
                        alpha=alpha, lam=lam, batch_size=bs)
    p = _params()
    order = sorted(range(len(ry)), key=lambda i: (int(ry[i]), i))
    i_d = _fisher(p, torch.cat([rx[order], fx]), torch.cat([ry[order], fy]), bs)
    i_f = _fisher(p, fx, fy, bs)
    with torch.no_grad():
        for t, a, b in zip(p, i_f, i_d, strict=True):
            sel = a > alpha * b
            t[sel] *= torch.clamp(lam * b[sel] / a[sel], max=1.0)
    assert res.extra["dampened"] > 0
    _check(res, p)


# --------------------------------------------------------------------------- SalUn and RL
def _rl_reference(fx: torch.Tensor, fy: torch.Tensor, rx: torch.Tensor | None, ry: torch.Tensor | None, bs: int,
                  lr: float, epochs: int, mask: list[torch.Tensor] | None, g: torch.Generator) -> list[torch.Tensor]:
    """`RL.py`, CIFAR-10 branch: each epoch a forget pass (labels drawn per batch, uniform over
    K), then a retain pass; SGD m 0.9, wd 5e-4; SalUn multiplies the gradient (with its decay
    term) by the mask."""
    p, buf = _params(), None
    for _ in range(epochs):
        steps = []
        for idx in torch.randperm(len(fy), generator=g).split(bs):
            steps.append((fx[idx], torch.randint(0, K, (len(idx),), generator=g)))
        # the retain permutation is drawn when the retain pass starts, after the forget pass
        # (the labels above were drawn batch by batch in between; the order of draws matches)
        if rx is not None and ry is not None:
            steps += [(rx[i], ry[i]) for i in torch.randperm(len(ry), generator=g).split(bs)]
        for xb, yb in steps:
            grads = _grads(F.cross_entropy(_f(p, xb), yb), p)
            d = [gi + 5e-4 * pi.detach() for pi, gi in zip(p, grads, strict=True)]
            if mask is not None:
                d = [di * m for di, m in zip(d, mask, strict=True)]
            buf = d if buf is None else [0.9 * b + di for b, di in zip(buf, d, strict=True)]
            with torch.no_grad():
                for pi, b in zip(p, buf, strict=True):
                    pi -= lr * b
    return p


def test_random_label_retain_forget_pass_then_retain_pass_labels_per_batch() -> None:
    (fx, fy), (rx, ry) = _data(5, 1), _data(6, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="random_label_retain", retain=(rx, ry), seed=SEED,
                        device="cpu", lr=0.1, epochs=2, batch_size=2)
    g = torch.Generator().manual_seed(SEED)
    _check(res, _rl_reference(fx, fy, rx, ry, 2, 0.1, 2, None, g))


def test_random_label_forget_pass_only_labels_per_batch() -> None:
    """The forget-only variant: RL.py's forget pass alone (no retain data)."""
    fx, fy = _data(5, 1)
    res = mumis.unlearn(_model(), (fx, fy), method="random_label", seed=SEED, device="cpu", lr=0.1, epochs=3,
                        batch_size=2)
    _check(res, _rl_reference(fx, fy, None, None, 2, 0.1, 3, None, torch.Generator().manual_seed(SEED)))


def test_salun_mask_from_summed_forget_gradients_then_masked_rl() -> None:
    """`generate_mask.py`: |sum over forget batches of grad(-CE)|, one global top-ratio threshold;
    then RL with masked gradients."""
    (fx, fy), (rx, ry) = _data(5, 1), _data(6, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="salun", retain=(rx, ry), seed=SEED, device="cpu",
                        lr=0.1, epochs=2, batch_size=2, mask_ratio=0.4, mask_batch_size=100)
    g = torch.Generator().manual_seed(SEED)
    torch.randperm(len(fy), generator=g)  # the mask's single batch (its order does not matter)
    p0 = _params()
    sal = [t.abs() for t in _grads(-F.cross_entropy(_f(p0, fx), fy), p0)]
    flat = torch.cat([t.flatten() for t in sal])
    keep = int(flat.numel() * 0.4)
    thresh = torch.sort(flat, descending=True).values[keep - 1]
    assert (flat == thresh).sum() == 1, "ties would make the reference mask ambiguous"
    mask = [(t >= thresh).float() for t in sal]
    _check(res, _rl_reference(fx, fy, rx, ry, 2, 0.1, 2, mask, g))


# --------------------------------------------------------------------------- AMUN
def _pgd_one(w: list[torch.Tensor], x: torch.Tensor, y: int, eps: float, steps: int) -> tuple[torch.Tensor, int, float]:
    """`pgdl2_modified.py` for one sample: steps of eps/10 along the normalised gradient of
    CE(y), projected on the L2 ball, clipped to [0, 1]; stop at the first misclassified
    iterate; double eps after each `steps` steps while still classified right."""
    adv = x.clone()
    while True:
        for _ in range(steps):
            a = adv.clone().requires_grad_(True)
            logits = _f(w, a[None])
            if int(logits.argmax()) != y:
                return adv, int(logits.argmax()), eps
            (g,) = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([y])), a)
            delta = adv + eps / 10 * g / (g.norm() + 1e-10) - x
            adv = torch.clamp(x + delta * min(eps / float(delta.norm()), 1.0), 0, 1)
        pred = int(_f(w, adv[None]).argmax())
        if pred != y:
            return adv, pred, eps
        eps *= 2


def test_amun_closest_adversarial_examples_then_finetune_on_forget_and_them() -> None:
    """`AMUN_all_in_one.py --unlearn_method amun`: the first init_samples forget samples start
    at eps 0.01, the others at the median radius those needed; fine-tune on the forget samples
    (own labels) + their adversarial examples (the model's labels), SGD m 0.9, wd 5e-4, StepLR."""
    d = mumis.get_method("amun").defaults()
    assert (d["lr"], d["epochs"], d["batch_size"], d["pgd_steps"], d["lr_step_epochs"]) == (0.05, 10, 128, 50, 1)
    fx, fy = _data(5, 1)
    res = mumis.unlearn(_model(), (fx, fy), method="amun", seed=SEED, device="cpu", lr=0.1, epochs=2,
                        batch_size=0, pgd_steps=3, init_samples=3, lr_gamma=0.5)
    w0 = [t.detach() for t in _start()]
    first = [_pgd_one(w0, fx[i].flatten(), int(fy[i]), 0.01, 3) for i in range(3)]
    med = float(torch.tensor([e for *_, e in first]).median())  # 3 values: the middle one
    rest = [_pgd_one(w0, fx[i].flatten(), int(fy[i]), med, 3) for i in range(3, 5)]
    adv = torch.stack([a for a, *_ in first + rest]).view_as(fx)
    y_adv = torch.tensor([lab for _, lab, _ in first + rest])
    assert (y_adv != fy).all()
    x, y = torch.cat([fx, adv]), torch.cat([fy, y_adv])
    p, opt = _params(), _SGD(0.9, 5e-4)
    for epoch in range(2):
        opt.step(p, _grads(F.cross_entropy(_f(p, x), y), p), 0.1 * 0.5**epoch)
    assert res.extra["adversarial_found"] == 5
    _check(res, p)


def test_amun_retain_adds_the_retain_set_to_the_finetuning_set() -> None:
    """`--remain use` with `--unlearn_method amun`: D_R + D_F + D_A, shuffled together."""
    (fx, fy), (rx, ry) = _data(4, 1), _data(6, 2)
    res = mumis.unlearn(_model(), (fx, fy), method="amun_retain", retain=(rx, ry), seed=SEED, device="cpu", lr=0.1,
                        epochs=2, batch_size=0, pgd_steps=3, init_samples=4)
    w0 = [t.detach() for t in _start()]
    found = [_pgd_one(w0, fx[i].flatten(), int(fy[i]), 0.01, 3) for i in range(4)]
    adv = torch.stack([a for a, *_ in found]).view_as(fx)
    x = torch.cat([fx, adv, rx])
    y = torch.cat([fy, torch.tensor([lab for _, lab, _ in found]), ry])
    p, opt = _params(), _SGD(0.9, 5e-4)
    for epoch in range(2):
        opt.step(p, _grads(F.cross_entropy(_f(p, x), y), p), 0.1 * 0.1**epoch)
    _check(res, p)


# --------------------------------------------------------------------------- adapted presets
ADAPTED = sorted((Path(__file__).resolve().parents[2] / "configs" / "methods" / "adapted").glob("*.yaml"))


@pytest.mark.parametrize("path", ADAPTED, ids=lambda p: p.stem)
def test_adapted_presets_build_strictly_and_change_a_default(path: Path) -> None:
    """configs/methods/adapted/NAME.yaml: named after its method, valid settings only, and not
    the defaults again (the defaults are the official settings)."""
    from mumis.config import build_config
    from mumis.runs.settings import load_method_file

    method, settings = load_method_file(path)
    assert method == path.stem
    cls = mumis.get_method(method)
    build_config(cls.Config, settings, what=f"preset {path.name}")
    assert settings and any(cls.defaults()[k] != v for k, v in settings.items())


def test_there_are_adapted_presets() -> None:
    assert {p.stem for p in ADAPTED} >= {"scrub", "neggrad_plus", "boundary_shrink"}
