"""Benchmark grids: validated YAML configs, the resumable runner and its per-cell records."""

from .config import REFERENCE_LABEL, BenchConfig, MethodEntry, cell_id, load_bench_config, parse_bench_config
from .runner import BENCH_FILE, RECORD_FORMAT, BenchResult, read_records, run_bench

__all__ = [
    "BENCH_FILE", "RECORD_FORMAT", "REFERENCE_LABEL", "BenchConfig", "BenchResult", "MethodEntry",
    "cell_id", "load_bench_config", "parse_bench_config", "read_records", "run_bench",
]
