"""reprokit writes manifests with its own emitter: every document must load back identically."""

from __future__ import annotations

import math
import random

import pytest
import yaml

from reprokit._model.yaml import dump

PIECES = [
    "a", "b", " ", "\n", "\t", ":", "#", "-", "'", '"', "\\", "é", "\u2028", "\x85", "\x00",
    "\x7f", "😀", "{", "[", "*", "&", "!", "%", "@", "`", "|", ">", "?", ",", "\ufeff", "1",
    ".", "e", "~",
]  # fmt: skip
TRICKY = [
    "true", "null", "Yes", "1.0", "1e5", "0x1f", "0o7", "1_000", "12:30:00", "2026-11-26", ".inf",
    "-", "- a", "a: b", "=", "<<", "0755", "+1", ".5", "x\n y", "\n", "a\n\nb\n", "  lead\nx",
    "trail \nx", "a #b", "a:b", "/x/y", "_x", "@x", "",
]  # fmt: skip


def _text(rng: random.Random) -> str:
    s = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
    return rng.choice([s, s + "\n", *TRICKY])


def _value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice(
            [
                None, True, False, rng.randint(-(10**20), 10**20),
                rng.random() * 10 ** rng.randint(-30, 30), -0.0, math.inf, -math.inf, 1e-05,
                1e16, 5e-324, _text(rng), b"\x00\xffab",
            ]
        )  # fmt: skip
    if r < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice([_text(rng), rng.randint(-5, 5)]): _value(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("seed", range(4))
def test_random_documents_round_trip_through_both_pyyaml_loaders(seed):
    rng = random.Random(seed)
    loaders = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])
    for _ in range(1500):
        doc = {"k": _value(rng), "x": _value(rng)}
        text = dump(doc)
        for loader in loaders:
            assert _same(doc, yaml.load(text, Loader=loader)), text  # noqa: S506


def test_nan_and_lone_surrogates_have_a_form():
    back = yaml.safe_load(dump({"n": math.nan, "s": "a\udcffb"}))
    assert math.isnan(back["n"]) and back["s"] == "a\ufffdb"


def test_multi_line_text_is_written_as_a_readable_block():
    text = dump({"traceback": "Traceback (most recent call last):\n  File x\nValueError: no\n"})
    assert text.startswith("traceback: |\n  Traceback")
