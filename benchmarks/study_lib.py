"""Helpers of the MU-Mis study (benchmarks/mumis_study.py): cached original/retrained pairs and gaps."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import mumis
from mumis.data import load_dataset, make_splits, resolve_manifest
from mumis.models import build_model

CACHE = Path(__file__).resolve().parent.parent / "runs" / "study-cache"


def simple_train(model, x, y, *, epochs, lr, seed, batch_size=128, wd=5e-4):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def acc(model, pair):
    x, y = pair
    model.eval()
    pred = torch.cat([model(x[i:i + 2048]).argmax(1) for i in range(0, len(x), 2048)])
    return 100.0 * float((pred == y).float().mean())


def accs(model, s):
    return {"forget": acc(model, s.forget), "retain": acc(model, s.retain), "test": acc(model, s.test),
            "test_rem": acc(model, s.test_remaining), "test_fgt": acc(model, s.test_forgotten)}


def gap(a, r):
    return sum(abs(a[k] - r[k]) for k in ("test_rem", "test_fgt", "test")) / 3


def subset(bundle, n, seed=0):
    if n and n < len(bundle.y_train):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(bundle.y_train), generator=g)[:n].sort().values
        bundle.x_train, bundle.y_train = bundle.x_train[idx], bundle.y_train[idx]
    return bundle


def case(dataset, model_name, cls, *, seed=0, n_train=0, epochs=10, lr=0.05, tag=""):
    """Original + retrained (cached) and the splits of one full-class case."""
    bundle = subset(load_dataset(dataset), n_train)
    man = resolve_manifest(f"class:{cls}", bundle, seed=seed)
    s = make_splits(bundle, man)
    mean, std = bundle.channel_stats()
    probe = build_model(model_name, input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std)
    width = sum(p.numel() for p in probe.parameters())  # architecture changes invalidate the cache
    key = f"{dataset}-{n_train}-{model_name}{width}-e{epochs}-lr{lr}-s{seed}{tag}"
    out = {}
    for which, (x, y) in (("orig", (bundle.x_train, bundle.y_train)), (f"retr{cls}", s.retain)):
        torch.manual_seed(seed)
        m = build_model(model_name, input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std)
        f = CACHE / f"{key}-{which}.safetensors"
        if f.exists():
            m.load_state_dict(load_file(f))
            m.eval()
        else:
            t = time.perf_counter()
            simple_train(m, x, y, epochs=epochs, lr=lr, seed=seed)
            CACHE.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f)
            (CACHE / f"{key}-{which}.json").write_text(json.dumps({"train_s": time.perf_counter() - t}))
        out[which[:4]] = m
    return out["orig"], out["retr"], s


#: The MU-Mis defaults sections 1-6 of docs/mumis-study.md were measured with (every weight,
#: raw loss, SGD 1e-4); section 7 (benchmarks/resnet_study.py) replaced them. A variant's own
#: settings go on top, so those tables still reproduce.
EARLIER_DEFAULTS = {"update": "all", "normalise": False, "lr": 1e-4, "batchnorm_filters": "free"}


def run_variant(orig, retr, s, **cfg):
    cfg = {**EARLIER_DEFAULTS, **cfg}
    ref = accs(retr, s)
    t = time.perf_counter()
    res = mumis.unlearn(orig, s.forget, method=cfg.pop("method", "mumis"), device="cpu", **cfg)
    dt = time.perf_counter() - t
    a = accs(res.model, s)
    return {"gap": gap(a, ref), "acc": a, "ref": ref, "steps": res.steps, "stop": res.stop_reason,
            "time_s": dt}


def library_case(dataset, model_name, spec, *, seed=0, recipe="quick", n_train=0):
    """Original + retrained trained with mumis's own recipes (what a user gets), cached."""
    from mumis.training import make_train_config, train_model

    bundle = subset(load_dataset(dataset), n_train)
    s = make_splits(bundle, resolve_manifest(spec, bundle, seed=seed))
    mean, std = bundle.channel_stats()
    cfg = make_train_config(recipe, dataset=dataset, model=model_name)
    from mumis.config import config_to_dict
    from mumis.utils import hash_arrays

    # the recipe's settings and the architecture are part of the key: changing either retrains
    arch = sum(p.numel() for p in build_model(model_name, input_shape=bundle.input_shape, num_classes=10).parameters())
    key = f"lib-{dataset}-{n_train}-{model_name}{arch}-{recipe}-{hash_arrays(config_to_dict(cfg))[:8]}-s{seed}"
    out = []
    for which, (x, y) in (("orig", (bundle.x_train, bundle.y_train)), (spec.replace(":", "_"), s.retain)):
        m = build_model(model_name, input_shape=bundle.input_shape, num_classes=10, mean=mean, std=std, seed=seed)
        f = CACHE / f"{key}-{which}.safetensors"
        if f.exists():
            m.load_state_dict(load_file(f))
        else:
            train_model(m, x, y, cfg, seed=seed, device="cpu", progress=False)
            CACHE.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f)
        out.append(m.eval())
    return out[0], out[1], s
