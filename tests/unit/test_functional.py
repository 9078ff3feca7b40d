"""Input gradients and sensitivities against finite differences and torch.func."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mumis.exceptions import ModelError
from mumis.functional import (
    input_gradients,
    input_sensitivity,
    norms,
    other_classes,
    sensitivity_profile,
)


def _mlp(seed: int = 0, k: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, k)).double().eval()


def _bn_cnn() -> nn.Module:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(3 * 4 * 4, 5))
    m.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            m(torch.rand(16, 1, 4, 4))
    return m.eval()


def test_input_gradients_match_finite_differences():
    model = _mlp()
    x = torch.rand(3, 1, 2, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 3])
    g = input_gradients(model, x, y)
    eps = 1e-6
    fd = torch.zeros_like(x)
    flat = x.view(3, -1)
    for i in range(3):
        for j in range(flat.shape[1]):
            xp, xm = flat.clone(), flat.clone()
            xp[i, j] += eps
            xm[i, j] -= eps
            fp = model(xp.view_as(x))[i, y[i]]
            fm = model(xm.view_as(x))[i, y[i]]
            fd.view(3, -1)[i, j] = (fp - fm) / (2 * eps)
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)


def test_input_gradients_match_torch_func_jacobian():
    model = _mlp(2)
    x = torch.rand(4, 6, dtype=torch.float64)
    y = torch.tensor([1, 0, 3, 2])
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))(x)  # (N, K, D)
    expected = jac[torch.arange(4), y]  # (N, D)
    torch.testing.assert_close(input_gradients(model, x, y), expected)
    torch.testing.assert_close(input_sensitivity(model, x, y), expected.norm(dim=1))
    torch.testing.assert_close(input_sensitivity(model, x, y, norm="squared"), expected.pow(2).sum(1))


def test_per_sample_gradients_do_not_depend_on_the_batch_in_eval_mode():
    model = _bn_cnn()
    x = torch.rand(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    whole = input_gradients(model, x, y)
    alone = torch.cat([input_gradients(model, x[i : i + 1], y[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(whole, alone)
    part = input_gradients(model, x[2:5], y[2:5])
    torch.testing.assert_close(whole[2:5], part)


def test_weight_gradient_of_squared_sensitivity_matches_torch_func():
    """The double-backprop path MU-Mis uses: d/dw sum_i S_{c_i}(x_i)^2."""
    model = _mlp(3)
    x = torch.rand(3, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    loss = input_sensitivity(model, x, y, norm="squared", create_graph=True).sum()
    params = dict(model.named_parameters())
    got = torch.autograd.grad(loss, list(params.values()), allow_unused=True)  # last bias: unused

    def f(p):
        def logit(xi, onehot):
            return (torch.func.functional_call(model, p, (xi.unsqueeze(0),))[0] * onehot).sum()  # f_y(x)

        onehot = torch.nn.functional.one_hot(y, 4).double()  # (N, K): indexing is not vmap-safe
        g = torch.func.vmap(torch.func.grad(logit))(x, onehot)  # (N, D)
        return g.pow(2).sum()

    expected = torch.func.grad(f)(params)
    for (name, p), gv in zip(params.items(), got, strict=True):
        torch.testing.assert_close(torch.zeros_like(p) if gv is None else gv, expected[name])


def test_other_classes_and_norms():
    oc = other_classes(torch.tensor([0, 3]), 4)
    assert oc.tolist() == [[1, 2, 3], [0, 1, 2]]
    g = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert norms(g).tolist() == [5.0, 1.0]
    assert norms(g, "squared").tolist() == [25.0, 1.0]


def test_sensitivity_profile_matches_direct_computation():
    model = _mlp(4).float()
    x = torch.rand(7, 6)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    target, irrelevant = sensitivity_profile(model, x, y, batch_size=3)
    torch.testing.assert_close(target, input_sensitivity(model, x, y))
    expected = torch.stack([input_sensitivity(model, x, (y + o) % 4) for o in (1, 2, 3)]).mean(0)
    torch.testing.assert_close(irrelevant, expected)


def test_bad_logits_shape_is_a_clear_error():
    class Flat(nn.Module):
        def forward(self, x):
            return x.sum(dim=1)  # (N,) instead of (N, K)

    with pytest.raises(ModelError, match=r"logits of shape \(N, K\)"):
        input_gradients(Flat(), torch.rand(2, 3), torch.tensor([0, 0]))
