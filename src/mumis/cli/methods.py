"""`mumis methods [NAME]`: list the registered unlearning methods, or show one method's settings.

    mumis methods                 # table: name, data needs, double backward, BatchNorm mode, paper
    mumis methods mumis           # summary, paper, data needs and every setting (default, help)
    mumis methods mumis --yaml    # the method's defaults as a commented YAML preset
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import textwrap
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from ..methods import METHODS, UnlearningMethod


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "methods", help="list unlearning methods, or show one method's settings and paper",
        description="List the registered unlearning methods, or show one method's settings.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a method name (omit to list all)")
    p.add_argument("--yaml", action="store_true",
                   help="print NAME's defaults as a commented YAML preset (for --config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        if args.yaml:
            from ..exceptions import ConfigError

            raise ConfigError("--yaml needs a method name: mumis methods NAME --yaml")
        print(format_table())
        return 0
    cls = METHODS.get(args.name)  # ConfigError with did-you-mean -> exit 2
    print(preset_yaml(cls) if args.yaml else format_method(cls), end="" if args.yaml else "\n")
    return 0


# --------------------------------------------------------------------------- text helpers
def type_name(tp: Any) -> str:
    """A short readable name of a config field type: `float`, `sgd|adam`, `float|none`."""
    origin = get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return "|".join("none" if a is type(None) else type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {type_name(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp))


def format_value(value: Any) -> str:
    """A value as the user would type it after `--set key=` (YAML spelling)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _table(rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def format_table() -> str:
    """Every registered method: name, data needs, double backward, BatchNorm mode, paper."""
    rows = [["METHOD", "DATA NEEDS", "DOUBLE BACKWARD", "BATCHNORM", "PAPER"]]
    for name, cls in METHODS.items():
        rows.append([name, cls.data_needs(), "yes" if cls.needs_double_backward else "no",
                     cls.batchnorm_mode, cls.paper or "-"])
    foot = ("\nBATCHNORM: what the method does with BatchNorm layers (train: batch statistics, running "
            "statistics updated; eval: running statistics used and kept).\n"
            "`mumis methods NAME` shows a method's settings; `mumis unlearn --method NAME --set key=value`.")
    return _table(rows) + "\n" + foot


def setting_rows(cls: type[UnlearningMethod]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) of every setting of `cls`, in declaration order."""
    hints = typing.get_type_hints(cls.Config)
    defaults = cls.defaults()
    docs = cls.setting_docs()
    return [(f.name, type_name(hints[f.name]), format_value(defaults[f.name]), docs.get(f.name, ""))
            for f in dataclasses.fields(cls.Config)]


def format_method(cls: type[UnlearningMethod]) -> str:
    """One method's description and settings, wrapped to the terminal width."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    head = [
        f"{cls.name}: {cls.summary}" if cls.summary else cls.name,
        "",
        _table([
            ["paper:", cls.paper or "-"],
            ["data needs:", cls.data_needs()],
            ["needs double backward:", "yes" if cls.needs_double_backward else "no"],
            ["batchnorm mode:", cls.batchnorm_text()],
        ], indent="  "),
        "",
        "settings (--set KEY=VALUE, or a YAML file with --config; `--yaml` prints them as a preset):",
    ]
    rows = setting_rows(cls)
    w_name = max(len(r[0]) for r in rows)
    w_default = max(len(r[2]) for r in rows)
    lines = []
    for name, tp, default, help_ in rows:
        lead = f"  {name.ljust(w_name)}  {default.ljust(w_default)}  "
        text = f"{help_} [{tp}]" if help_ else f"[{tp}]"
        wrapped = textwrap.wrap(text, width=max(30, width - len(lead))) or [""]
        lines.append(lead + wrapped[0])
        lines += [" " * len(lead) + more for more in wrapped[1:]]
    return "\n".join(head + lines)


def preset_yaml(cls: type[UnlearningMethod]) -> str:
    """The defaults of `cls` as a commented YAML preset for `mumis unlearn --config FILE`."""
    out = [
        f"# {cls.name}: {cls.summary}" if cls.summary else f"# {cls.name}",
        f"# Paper: {cls.paper}" if cls.paper else "#",
        f"# Data needs: {cls.data_needs()}. Defaults of the method's settings (`mumis methods {cls.name}`);",
        "# use with `mumis unlearn --config THIS.yaml [--set key=value ...]`. Regenerate with",
        f"# `mumis methods {cls.name} --yaml > configs/methods/{cls.name}.yaml`.",
        "",
        yaml.safe_dump({"method": cls.name}, sort_keys=False).rstrip(),
    ]
    docs = cls.setting_docs()
    for key, value in cls.defaults().items():
        out.append("")
        out += ["# " + line for line in textwrap.wrap(docs.get(key, "") or key, width=96)]
        if isinstance(value, (list, tuple)):  # one line: `hidden: [256, 256]`
            out.append(f"{key}: " + yaml.safe_dump(list(value), default_flow_style=True).strip())
        else:
            out.append(yaml.safe_dump({key: value}, sort_keys=False).rstrip())
    return "\n".join(out) + "\n"
