"""Shared test fixtures: tiny deterministic data, one CPU thread (the machine is shared)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_rng():
    """Tests must not leak global RNG state into each other."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)
