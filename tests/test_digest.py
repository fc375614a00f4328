"""The canonical fingerprint of values and the SHA-256 of files: what "same" means in reprokit."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

import reprokit
from reprokit._model.digest import fingerprint_exact, sha256_file

fingerprint = reprokit.fingerprint
REPO_ROOT = Path(__file__).resolve().parents[1]


def _float_from_bits(hex_bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_bits))[0]


class Color(enum.IntEnum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class OtherPoint:
    x: float
    y: float


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


# --- floats ---------------------------------------------------------------------------------


def test_float_sum_differs_from_its_rounded_neighbour() -> None:
    assert 0.1 + 0.2 != 0.3
    assert fingerprint(0.1 + 0.2) != fingerprint(0.3)


def test_negative_zero_differs_from_zero() -> None:
    assert fingerprint(-0.0) != fingerprint(0.0)


def test_nan_fingerprint_is_stable_for_the_same_bits() -> None:
    a = _float_from_bits("7ff8000000000000")
    b = _float_from_bits("7ff8000000000000")
    assert a is not b
    assert fingerprint(a) == fingerprint(a)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(float("nan")) == fingerprint(a)


def test_nans_with_different_payload_bits_differ() -> None:
    a = _float_from_bits("7ff8000000000001")
    b = _float_from_bits("7ff8000000000002")
    assert fingerprint(a) != fingerprint(b)


# --- type tagging ---------------------------------------------------------------------------


def test_dict_fingerprint_does_not_depend_on_insertion_order() -> None:
    assert fingerprint({"a": 1, "b": 2, 3: "c"}) == fingerprint({3: "c", "b": 2, "a": 1})


def test_nested_dicts_compare_by_content_at_every_level() -> None:
    one = {"outer": {"x": 1, "y": {"z": [1, 2]}}, "k": 0}
    two = {"k": 0, "outer": {"y": {"z": [1, 2]}, "x": 1}}
    changed = {"k": 0, "outer": {"y": {"z": [1, 3]}, "x": 1}}
    assert fingerprint(one) == fingerprint(two)
    assert fingerprint(one) != fingerprint(changed)


def test_list_and_tuple_with_same_items_differ() -> None:
    assert fingerprint([1, 2]) != fingerprint((1, 2))


def test_int_float_and_bool_one_all_differ() -> None:
    assert len({fingerprint(1), fingerprint(1.0), fingerprint(True)}) == 3


def test_str_and_bytes_with_same_content_differ() -> None:
    assert fingerprint("abc") != fingerprint(b"abc")


def test_set_fingerprint_does_not_depend_on_iteration_order() -> None:
    items = [f"item{i}" for i in range(50)]
    assert fingerprint(set(items)) == fingerprint(set(reversed(items)))
    assert fingerprint(set(items)) != fingerprint(set(items[:-1]))


def test_int_enum_member_differs_from_its_int_value() -> None:
    assert Color.RED == 1
    assert fingerprint(Color.RED) != fingerprint(1)
    assert fingerprint_exact(Color.RED)[1] is True


def test_dataclass_instances_compare_by_fields_and_type() -> None:
    assert fingerprint(Point(1.0, 2.0)) == fingerprint(Point(1.0, 2.0))
    assert fingerprint(Point(1.0, 2.0)) != fingerprint(Point(1.0, 3.0))
    assert fingerprint(Point(1.0, 2.0)) != fingerprint(OtherPoint(1.0, 2.0))
    assert fingerprint_exact(Point(1.0, 2.0))[1] is True


def test_path_is_exact_and_differs_from_its_string() -> None:
    fp, exact = fingerprint_exact(Path("data/train.csv"))
    assert exact is True
    assert fp == fingerprint(PurePosixPath("data/train.csv"))
    assert fp != fingerprint("data/train.csv")


# --- numpy ----------------------------------------------------------------------------------


def test_numpy_dtype_matters_for_equal_values() -> None:
    values = [1.0, 2.5, 3.0]
    assert fingerprint(np.array(values, dtype=np.float32)) != fingerprint(
        np.array(values, dtype=np.float64)
    )


def test_numpy_shape_matters_for_the_same_bytes() -> None:
    a = np.arange(6, dtype=np.int64)
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a.reshape(2, 3)) != fingerprint(a.reshape(3, 2))


def test_numpy_non_contiguous_view_equals_its_contiguous_copy() -> None:
    a = np.arange(10, dtype=np.float64)
    view = a[::2]
    assert not view.flags.c_contiguous
    assert fingerprint(view) == fingerprint(np.ascontiguousarray(view))


def test_numpy_fortran_order_equals_c_order() -> None:
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert fingerprint(np.asfortranarray(a)) == fingerprint(a)


def test_numpy_big_endian_differs_from_little_endian_with_same_values() -> None:
    # Pinned behaviour: the dtype string (byte order included) and raw bytes are hashed.
    big = np.arange(3, dtype=">f8")
    little = np.arange(3, dtype="<f8")
    assert np.array_equal(big, little)
    assert fingerprint(big) != fingerprint(little)


def test_numpy_scalar_equals_its_zero_dim_array_not_the_python_float() -> None:
    scalar = np.float32(1.5)
    assert fingerprint(scalar) == fingerprint(np.array(1.5, dtype=np.float32))
    assert fingerprint(scalar) != fingerprint(1.5)
    assert fingerprint(scalar) != fingerprint(np.float64(1.5))
    assert fingerprint_exact(scalar)[1] is True


def test_numpy_float64_scalar_differs_from_python_float() -> None:
    assert fingerprint(np.float64(1.5)) != fingerprint(1.5)


def test_numpy_object_array_encodes_its_items() -> None:
    a = np.array([1, "a", None], dtype=object)
    b = np.array([1, "a", None], dtype=object)
    fp, exact = fingerprint_exact(a)
    assert exact is True
    assert fp == fingerprint(b)
    assert fp != fingerprint(np.array([1, "b", None], dtype=object))
    assert fp != fingerprint([1, "a", None])


def test_numpy_empty_array_fingerprint_keeps_shape() -> None:
    assert fingerprint(np.zeros((0, 3))) != fingerprint(np.zeros((3, 0)))


def test_numpy_datetime_array_can_be_fingerprinted() -> None:
    a = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]")
    assert fingerprint(a) != fingerprint(a.astype("datetime64[s]"))


# --- exactness and robustness ---------------------------------------------------------------


def test_unencodable_object_is_not_exact() -> None:
    fp, exact = fingerprint_exact(Opaque())
    assert exact is False
    assert len(fp) == 64


def test_unencodable_object_nested_deep_in_containers_is_not_exact() -> None:
    assert fingerprint_exact({"ok": 1, "nested": [{"x": Opaque()}]})[1] is False


def test_unencodable_object_as_dict_key_is_not_exact() -> None:
    assert fingerprint_exact({Opaque(): 1})[1] is False


def test_unencodable_object_inside_set_is_not_exact() -> None:
    assert fingerprint_exact({1, Opaque()})[1] is False


def test_frozenset_dict_key_is_exact() -> None:
    assert fingerprint_exact({frozenset({1, 2}): "v"})[1] is True


def test_cyclic_list_terminates_and_is_not_exact() -> None:
    cyclic: list = [1]
    cyclic.append(cyclic)
    fp, exact = fingerprint_exact(cyclic)
    assert exact is False
    assert fp == fingerprint_exact(cyclic)[0]


def test_cyclic_dict_terminates_and_is_not_exact() -> None:
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    assert fingerprint_exact(cyclic)[1] is False


def test_cyclic_dataclass_terminates_and_is_not_exact() -> None:
    @dataclasses.dataclass
    class Node:
        nxt: object = None

    node = Node()
    node.nxt = node
    assert fingerprint_exact(node)[1] is False


def test_dict_with_two_nan_keys_and_unorderable_values_can_be_fingerprinted() -> None:
    value = {float("nan"): {"a": 1}, float("nan"): {"b": 2}}
    assert len(value) == 2
    assert len(fingerprint(value)) == 64


def test_huge_int_can_be_fingerprinted() -> None:
    assert fingerprint(10**5000) != fingerprint(10**5000 + 1)


def test_object_with_raising_repr_is_not_exact_instead_of_raising() -> None:
    class BrokenRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert fingerprint_exact(BrokenRepr())[1] is False


# --- golden values --------------------------------------------------------------------------

GOLDEN = [
    (None, "0496fbd31aa2ca51e7cab124f3ae9e46b42be122cefbcd28363ca1e487400d53"),
    (True, "6f3153a1e4833bba65a8d184c6244b78b098697b5aba7acc12af7157bd38144f"),
    (0, "6f3d064ebd427abc4a974ddd9ed184efe60d988154a48804e6be6de114dd0cdd"),
    (-1, "dd93a0061f255e771be15d932d60c9a443850f7e78a1f1ac0564dc14bb3d96f4"),
    (2**100, "90fdfc01cd041fda823923453dda7ee7ff374d9d66f3af55c23e4fb139b1e2b2"),
    (0.1, "99f432cca15d8d31625367ce343d4e984f29e195c04a84d3614cff1ac18dff23"),
    (float("inf"), "9c757330f3777e0e833018779875a9e9dd0c37eaa2f705aacceea765be03384c"),
    ("héllo", "f13d66cf1715065f390b499be39be5c1d87b992061c9a900d22232f4087a3663"),
    (b"\x00", "1a03feb3655608b2990a9388a6fc3e330d4c8bb3e6455c65a73ad9d8d9976fa5"),
    ([1, "a"], "41db1e69d37b332a1cdfd806266bdcc1c1c2aefb5b018f7e748e4db43fdfa9da"),
    ({"b": 2, "a": [1.5]}, "a93bdb96eb996eb963b9ea34fe72ca1d84ba01aa9f8b30f1c873c0bb968afc5f"),
    (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        "9719b57cb782701279c370b28a69590df1f8937d68c02d37ca27758de77215a9",
    ),
]


@pytest.mark.parametrize(
    ("value", "expected"), GOLDEN, ids=[f"golden{i}" for i in range(len(GOLDEN))]
)
def test_golden_fingerprint(value: object, expected: str) -> None:
    assert fingerprint(value) == expected


def test_golden_none_is_sha256_of_version_and_tag() -> None:
    assert fingerprint(None) == hashlib.sha256(b"reprokit-fp-1\0N").hexdigest()


@pytest.mark.parametrize("n", [1, 63, 64, 65, 4095, 4096, 4097, 10_000])
def test_a_list_of_floats_is_its_floats_encoded_one_by_one(n: int) -> None:
    # Lists of plain floats are packed a block at a time: the bytes must be the definition's,
    # a type tag and eight big-endian bytes per float, whatever the length.
    specials = [-0.0, 0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1e308]
    values = [specials[i % 7] if i % 3 == 0 else i * 0.1 - 7 for i in range(n)]
    body = b"".join(b"f" + struct.pack(">d", v) for v in values)
    expected = hashlib.sha256(b"reprokit-fp-1\0l" + n.to_bytes(8, "big") + body).hexdigest()
    assert fingerprint(values) == expected
    assert fingerprint(tuple(values)) != expected  # a tuple is tagged as one


def test_a_list_with_other_numbers_among_its_floats_encodes_each_by_its_kind() -> None:
    class Weight(float):
        pass

    plain = [0.5, 1.5]
    assert fingerprint([0.5, Weight(1.5)]) == fingerprint(plain)  # a float subclass is a float
    assert fingerprint([0.5, np.float64(1.5)]) != fingerprint(plain)  # numpy keeps its dtype
    assert fingerprint([0.5, 1]) != fingerprint([0.5, 1.0])


# --- across processes -----------------------------------------------------------------------

_CHILD = """
import json
import reprokit
values = {
    "set": {"alpha", "beta", "gamma", "delta", b"x", 3},
    "dict": {"zeta": 1, "eta": [2, 3], "theta": {"iota": "k"}},
    "str": "reproducible",
    "frozenset_key": {frozenset({"a", "b", "c"}): 1},
}
print(json.dumps({k: reprokit.fingerprint(v) for k, v in values.items()}))
"""


def _child_fingerprints(hashseed: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hashseed
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_fingerprints_are_equal_across_processes_with_different_hash_seeds() -> None:
    first = _child_fingerprints("1")
    second = _child_fingerprints("987654")
    assert first == second
    assert len(set(first.values())) == len(first)


# --- files ----------------------------------------------------------------------------------


def test_sha256_file_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert sha256_file(path) == (hashlib.sha256(b"").hexdigest(), 0)


def test_sha256_file_of_three_megabyte_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"tail"
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_sha256_file_accepts_str_path(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello\n")
    assert sha256_file(str(path)) == (hashlib.sha256(b"hello\n").hexdigest(), 6)


# --- torch ----------------------------------------------------------------------------------


@pytest.mark.torch
def test_torch_tensor_fingerprint_is_stable_and_exact() -> None:
    torch = pytest.importorskip("torch")
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    fp, exact = fingerprint_exact(a)
    assert exact is True
    assert fp == fingerprint(a.clone())


@pytest.mark.torch
def test_torch_tensor_dtype_matters() -> None:
    torch = pytest.importorskip("torch")
    values = [1.0, 2.0, 3.0]
    assert fingerprint(torch.tensor(values, dtype=torch.float32)) != fingerprint(
        torch.tensor(values, dtype=torch.float64)
    )


@pytest.mark.torch
def test_torch_tensor_shape_matters() -> None:
    torch = pytest.importorskip("torch")
    a = torch.arange(6)
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))


@pytest.mark.torch
def test_torch_non_contiguous_tensor_equals_its_contiguous_copy() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    assert not t.is_contiguous()
    assert fingerprint(t) == fingerprint(t.contiguous())


@pytest.mark.torch
def test_torch_bfloat16_tensor_fingerprints_and_differs_from_float16() -> None:
    torch = pytest.importorskip("torch")
    values = [0.5, 1.0, -2.0]
    bf = torch.tensor(values, dtype=torch.bfloat16)
    fp, exact = fingerprint_exact(bf)
    assert exact is True
    assert fp == fingerprint(torch.tensor(values, dtype=torch.bfloat16))
    assert fp != fingerprint(torch.tensor(values, dtype=torch.float16))


@pytest.mark.torch
def test_torch_tensor_is_tagged_differently_from_numpy_array() -> None:
    torch = pytest.importorskip("torch")
    arr = np.arange(6, dtype=np.float32)
    assert fingerprint(torch.from_numpy(arr.copy())) != fingerprint(arr)


@pytest.mark.torch
def test_torch_tensor_requiring_grad_equals_detached() -> None:
    torch = pytest.importorskip("torch")
    t = torch.ones(3, requires_grad=True)
    assert fingerprint(t) == fingerprint(t.detach())


def test_a_list_of_plain_floats_hashes_as_its_items_one_by_one():
    """The fast path for weights as a list of floats writes the bytes the item-by-item path
    writes (a float subclass takes the item-by-item path)."""
    from reprokit._model.digest import fingerprint_exact

    class F(float):
        pass

    weights = [0.01 * i - 0.3 for i in range(64)] + [-0.0, float("inf"), float("nan")]
    assert fingerprint_exact(weights) == fingerprint_exact([F(x) for x in weights])
    assert fingerprint_exact(tuple(weights)) == fingerprint_exact(tuple(F(x) for x in weights))
    assert fingerprint_exact(weights) != fingerprint_exact(tuple(weights))
