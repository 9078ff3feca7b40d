"""Strict typed configs (mumis.config): coercion, unknown keys, --set parsing, YAML files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from mumis.config import (
    _coerce,
    build_config,
    config_to_dict,
    field_range,
    load_yaml,
    parse_set_args,
    redefault,
    setting,
)
from mumis.exceptions import ConfigError


@dataclass
class Cfg:
    steps: int = 10
    lr: float = 0.1
    flag: bool = False
    opt: Literal["sgd", "adam"] = "sgd"
    cap: float | None = None
    old_style: Optional[int] = None  # noqa: UP045  (typing.Optional must work too)
    sizes: tuple[int, ...] = (4, 2)
    names: list[str] = field(default_factory=lambda: ["a"])
    label: str = "x"

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be >= 1")


def build(**kw: object) -> Cfg:
    return build_config(Cfg, kw, what="test")


def test_defaults_and_overrides() -> None:
    assert build() == Cfg()
    assert build_config(Cfg, None) == Cfg()
    assert build(steps=3).steps == 3


@pytest.mark.parametrize("value, expected", [(3, 3), ("3", 3), (3.0, 3), ("-2", -2)])
def test_int_coercion(value: object, expected: int) -> None:
    if expected < 1:
        with pytest.raises(ConfigError, match="steps must be >= 1"):  # validate() runs
            build(steps=value)
        return
    got = build(steps=value).steps
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [3.5, "3.5", "three", True, None, [1]])
def test_int_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="steps must be an integer"):
        build(steps=value)


@pytest.mark.parametrize("value, expected", [(1, 1.0), ("1e-4", 1e-4), ("0.5", 0.5), (2.5, 2.5)])
def test_float_coercion(value: object, expected: float) -> None:
    got = build(lr=value).lr
    assert got == expected and type(got) is float


@pytest.mark.parametrize("value", ["fast", True, None, [0.1]])
def test_float_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="lr must be a number"):
        build(lr=value)


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("Yes", True), ("1", True), ("on", True),
    ("false", False), ("NO", False), ("0", False), ("off", False),
])
def test_bool_coercion(value: object, expected: bool) -> None:
    assert build(flag=value).flag is expected


@pytest.mark.parametrize("value", ["maybe", 1, 0, None])
def test_bool_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="flag must be true or false"):
        build(flag=value)


def test_literal() -> None:
    assert build(opt="adam").opt == "adam"
    with pytest.raises(ConfigError, match=r"opt must be one of 'sgd', 'adam', got 'sdg'\. Did you mean 'sgd'\?"):
        build(opt="sdg")
    with pytest.raises(ConfigError, match="one of"):
        build(opt="rmsprop")


@pytest.mark.parametrize("value, expected", [(None, None), ("none", None), ("null", None), ("None", None),
                                             ("2", 2.0), (3, 3.0)])
def test_optional(value: object, expected: float | None) -> None:
    assert build(cap=value).cap == expected


def test_typing_optional() -> None:
    assert build(old_style="none").old_style is None
    assert build(old_style="7").old_style == 7
    with pytest.raises(ConfigError, match="old_style must be an integer"):
        build(old_style="7.5")


def test_optional_rejects_with_inner_message() -> None:
    with pytest.raises(ConfigError, match="cap must be a number"):
        build(cap="big")


@pytest.mark.parametrize("value, expected", [("1,2", (1, 2)), ([3, "4"], (3, 4)), ((5,), (5,)), ("", ())])
def test_tuple(value: object, expected: tuple[int, ...]) -> None:
    assert build(sizes=value).sizes == expected


def test_tuple_and_list_reject() -> None:
    with pytest.raises(ConfigError, match="sizes must be a list"):
        build(sizes=5)
    with pytest.raises(ConfigError, match="sizes must be an integer"):
        build(sizes="1,x")
    assert build(names="p,q").names == ["p", "q"]


def test_str() -> None:
    assert build(label="y").label == "y"
    with pytest.raises(ConfigError, match="label must be a string"):
        build(label=3)


def test_unknown_key_lists_valid_ones_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as e:
        build(setps=3)
    msg = str(e.value)
    assert "unknown setting 'setps' for test" in msg
    assert "Did you mean 'steps'?" in msg
    assert "Valid settings: steps, lr, flag, opt, cap, old_style, sizes, names, label" in msg


def test_unknown_key_without_close_match() -> None:
    with pytest.raises(ConfigError) as e:
        build_config(Cfg, {"zzzzzz": 1})
    assert "Did you mean" not in str(e.value) and "Valid settings" in str(e.value)


def test_config_is_a_value_error() -> None:  # callers may catch the builtin
    with pytest.raises(ValueError):
        build(steps="x")


def test_config_to_dict_makes_tuples_lists() -> None:
    d = config_to_dict(build(sizes="1,2"))
    assert d["sizes"] == [1, 2] and d["names"] == ["a"] and d["cap"] is None
    assert build_config(Cfg, d) == build(sizes="1,2")  # round trip


# --------------------------------------------------------------------------- --set key=value
def test_parse_set_args_yaml_scalars() -> None:
    got = parse_set_args(["lr=0.5", "steps=3", "flag=true", "cap=null", "opt=adam", "sizes=1,2",
                          "expr=a=b", " label = hi ", "empty="])
    assert got == {"lr": 0.5, "steps": 3, "flag": True, "cap": None, "opt": "adam", "sizes": "1,2",
                   "expr": "a=b", "label": "hi", "empty": ""}
    assert parse_set_args(None) == {} and parse_set_args([]) == {}


def test_parse_set_then_build() -> None:
    # PyYAML reads `1e-4` (no dot) as a string: the typed build still makes it a float.
    cfg = build_config(Cfg, parse_set_args(["lr=1e-4", "sizes=8,4", "cap=none", "flag=yes"]))
    assert cfg.lr == 1e-4 and cfg.sizes == (8, 4) and cfg.cap is None and cfg.flag is True


def test_parse_set_later_wins() -> None:
    assert parse_set_args(["lr=1", "lr=2"]) == {"lr": 2}


def test_parse_set_malformed_yaml_kept_raw() -> None:
    assert parse_set_args(["x=[1"]) == {"x": "[1"}


@pytest.mark.parametrize("bad", ["lr", "=3", " =3"])
def test_parse_set_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_set_args([bad])


# --------------------------------------------------------------------------- YAML files
def test_load_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("# comment\nlr: 0.5\nsizes: [1, 2]\n")
    assert load_yaml(p) == {"lr": 0.5, "sizes": [1, 2]}
    assert build_config(Cfg, load_yaml(p)).sizes == (1, 2)


def test_load_yaml_empty_is_empty_mapping(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_text("# nothing\n")
    assert load_yaml(p) == {}


def test_load_yaml_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_yaml(tmp_path)  # a folder is not a file


@pytest.mark.parametrize("data, needle", [
    (b"\x80\x81\xff", "not a text file"), (b"a: 1\x00\x00", "binary file"),
    (b"a: 2001-13-45", "not valid YAML"), (b"[" * 3000, "not valid YAML"),
])
def test_load_yaml_non_text_names_the_file(tmp_path: Path, data: bytes, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(data)
    with pytest.raises(ConfigError, match=needle) as e:
        load_yaml(p)
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", parse_set_args(["lr=.inf"])["lr"], float("nan")])
def test_non_finite_floats_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="finite"):
        _coerce("lr", value, float)


def test_load_yaml_malformed_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("lr: [1, 2\nsteps: 3\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as e:
        load_yaml(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "3\n"])
def test_load_yaml_not_a_mapping(tmp_path: Path, text: str) -> None:
    p = tmp_path / "list.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(p)


def test_load_yaml_is_safe(tmp_path: Path) -> None:
    p = tmp_path / "evil.yaml"
    p.write_text("x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_yaml(p)


# --------------------------------------------------------------------------- declared ranges
@dataclass
class Ranged:
    lr: float = setting("learning rate", default=0.1, gt=0)
    momentum: float = setting("momentum", default=0.0, ge=0, lt=1)
    batch: int = setting("batch size", default=8, ge=0, note="0 = full batch")
    cap: float | None = setting("cap", default=None, gt=0, note="or None")
    pct: float = setting("percent", default=50.0, ge=0, le=100)
    free: float = setting("no range", default=-3.0)


@pytest.mark.parametrize("key, value, message", [
    ("lr", 0, "method 'x': lr must be > 0, got 0.0"),
    ("momentum", 1, "method 'x': momentum must be in [0, 1), got 1.0"),
    ("batch", -1, "method 'x': batch must be >= 0 (0 = full batch), got -1"),
    ("cap", -2, "method 'x': cap must be > 0 (or None), got -2.0"),
    ("pct", 101, "method 'x': pct must be in [0, 100], got 101.0"),
])
def test_declared_range_one_message_format(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_config(Ranged, {key: value}, what="method 'x'")
    assert str(e.value) == message


def test_declared_range_accepts_bounds_none_and_unranged() -> None:
    cfg = build_config(Ranged, {"momentum": 0, "batch": 0, "cap": None, "pct": 100, "free": -1e9})
    assert (cfg.momentum, cfg.batch, cfg.cap, cfg.pct) == (0.0, 0, None, 100.0)
    assert build_config(Ranged, {"cap": "2"}).cap == 2.0
    assert Ranged.__dataclass_fields__["lr"].metadata["help"] == "learning rate"


def test_outside_is_refused_for_every_range() -> None:
    for f in dataclasses.fields(Ranged):
        r = field_range(f)
        if r is not None:
            assert r.outside() not in r, f.name


def test_redefault_keeps_help_and_range() -> None:
    @dataclass
    class Child(Ranged):
        lr: float = redefault(Ranged, "lr", 0.5)
        pct: float = redefault(Ranged, "pct", 10.0, help="another help")

    assert Child().lr == 0.5 and Child.__dataclass_fields__["lr"].metadata["help"] == "learning rate"
    assert Child.__dataclass_fields__["pct"].metadata["help"] == "another help"
    with pytest.raises(ConfigError, match="lr must be > 0"):
        build_config(Child, {"lr": -1})
