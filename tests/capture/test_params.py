"""Params capture: binding a call's arguments and turning configs into plain, redacted values."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
from pathlib import Path

import numpy as np
import pytest

from reprokit._capture.params import bind_call, record_params
from reprokit._model.redact import REDACTED

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


class Optimizer(enum.Enum):
    ADAM = "adam"
    SGD = "sgd"


@dataclasses.dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 3
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)


class HasToDict:
    def to_dict(self) -> dict:
        return {"depth": 4, "width": (8, 16)}


# --- bind_call ------------------------------------------------------------------------------


def test_bind_call_applies_defaults() -> None:
    def train(lr, epochs=10, *, batch=32):
        return None

    assert bind_call(train, (0.1,), {}) == {"lr": 0.1, "epochs": 10, "batch": 32}


def test_bind_call_names_positional_and_keyword_arguments() -> None:
    def train(lr, epochs=10, *, batch=32):
        return None

    assert bind_call(train, (0.1, 5), {"batch": 64}) == {"lr": 0.1, "epochs": 5, "batch": 64}


def test_bind_call_leaves_out_self_of_a_method_function() -> None:
    class Trainer:
        def fit(self, data, epochs=2):
            return None

    trainer = Trainer()
    assert bind_call(Trainer.fit, (trainer, "d"), {}) == {"data": "d", "epochs": 2}


def test_bind_call_on_a_bound_method_binds_without_self() -> None:
    class Evaluator:
        def score(self, split, k=5):
            return None

    assert bind_call(Evaluator().score, ("val",), {}) == {"split": "val", "k": 5}


def test_bind_call_leaves_out_cls_of_a_classmethod_function() -> None:
    class Model:
        @classmethod
        def build(cls, layers, width=64):
            return None

    func = Model.__dict__["build"].__func__
    assert bind_call(func, (Model, 3), {}) == {"layers": 3, "width": 64}


def test_bind_call_on_a_bound_classmethod_binds_without_cls() -> None:
    class Factory:
        @classmethod
        def make(cls, kind, size=1):
            return None

    assert bind_call(Factory.make, ("cnn",), {}) == {"kind": "cnn", "size": 1}


def test_bind_call_records_var_positional_as_list() -> None:
    def run(first, *rest):
        return None

    assert bind_call(run, (1, 2, 3), {}) == {"first": 1, "rest": [2, 3]}


def test_bind_call_merges_var_keyword_into_top_level() -> None:
    def run(first, flag=False, **extra):
        return None

    assert bind_call(run, (1,), {"flag": True, "dropout": 0.2}) == {
        "first": 1,
        "flag": True,
        "dropout": 0.2,
    }


def test_bind_call_wrong_call_does_not_raise_and_records_what_was_passed() -> None:
    def train(lr):
        return None

    assert bind_call(train, (0.1, 2), {"nope": 3}) == {"arg0": 0.1, "arg1": 2, "nope": 3}


def test_bind_call_distinguishes_functions_wrapped_by_the_same_decorator() -> None:
    def passthrough(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)

        return wrapper

    @passthrough
    def first(a, b=1):
        return None

    @passthrough
    def second(x, y=2):
        return None

    assert bind_call(first, (5,), {}) == {"a": 5, "b": 1}
    assert bind_call(second, (5,), {}) == {"x": 5, "y": 2}


def test_bind_call_uses_each_closures_own_defaults() -> None:
    def make(default):
        def step(x=default):
            return None

        return step

    assert bind_call(make(1), (), {}) == {"x": 1}
    assert bind_call(make(2), (), {}) == {"x": 2}


def test_bind_call_on_bound_method_after_its_function() -> None:
    class Runner:
        def go(self, n, m=0):
            return None

    runner = Runner()
    assert bind_call(Runner.go, (runner, 1), {}) == {"n": 1, "m": 0}
    assert bind_call(runner.go, (1,), {}) == {"n": 1, "m": 0}


# --- record_params: config objects ----------------------------------------------------------


def test_record_params_from_argparse_namespace() -> None:
    params = record_params(argparse.Namespace(lr=0.1, name="run"))
    assert params.values == {"lr": 0.1, "name": "run"}
    assert params.problems == []


def test_record_params_from_nested_dataclass() -> None:
    params = record_params(TrainConfig())
    assert params.values == {"epochs": 3, "optim": {"name": "adam", "lr": 1e-3}}
    assert params.problems == []


def test_record_params_from_dict() -> None:
    params = record_params({"lr": 0.5, "layers": [1, 2], "extra": {"x": None}})
    assert params.values == {"lr": 0.5, "layers": [1, 2], "extra": {"x": None}}


def test_record_params_from_object_with_to_dict() -> None:
    params = record_params({"model": HasToDict()})
    assert params.values == {"model": {"depth": 4, "width": [8, 16]}}


def test_record_params_of_non_config_records_problem() -> None:
    params = record_params(42)
    assert params.values == {"params": {"unrecorded": "builtins.int", "repr": "42"}}
    assert params.problems == ["params: builtins.int is not a mapping or known config"]


def test_types_names_nested_dataclass_and_namespace() -> None:
    params = record_params({"cfg": TrainConfig(), "args": argparse.Namespace(a=1), "n": 1})
    assert params.types == {
        "cfg": f"{__name__}.TrainConfig",
        "args": "argparse.Namespace",
    }


def test_types_names_dataclass_field_holding_a_dataclass() -> None:
    assert record_params(TrainConfig()).types == {"optim": f"{__name__}.OptimConfig"}


# --- record_params: value conversion --------------------------------------------------------


def test_path_becomes_str() -> None:
    assert record_params({"data": Path("/data/train.csv")}).values == {"data": "/data/train.csv"}


def test_enum_becomes_its_value() -> None:
    assert record_params({"opt": Optimizer.SGD}).values == {"opt": "sgd"}


def test_numpy_float_scalar_becomes_python_float() -> None:
    value = record_params({"lr": np.float32(0.5)}).values["lr"]
    assert type(value) is float
    assert value == 0.5


def test_numpy_int_scalar_becomes_python_int() -> None:
    value = record_params({"n": np.int64(7)}).values["n"]
    assert type(value) is int
    assert value == 7


def test_tuple_becomes_list() -> None:
    assert record_params({"shape": (3, 224, 224)}).values == {"shape": [3, 224, 224]}


def test_small_numpy_array_becomes_list() -> None:
    params = record_params({"w": np.array([[1, 2], [3, 4]], dtype=np.int32)})
    assert params.values == {"w": [[1, 2], [3, 4]]}
    assert params.problems == []


def test_large_numpy_array_is_unrecorded_with_problem() -> None:
    params = record_params({"weights": np.zeros(1001)})
    assert params.values["weights"]["unrecorded"] == "numpy.ndarray"
    assert params.problems == ["weights: numpy array float64[1001] not recorded"]


def test_open_file_is_unrecorded_with_problem_naming_the_param(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("x")
    with open(path) as fh:
        params = record_params({"logfile": fh})
        expected_repr = repr(fh)
    assert params.values == {"logfile": {"unrecorded": "_io.TextIOWrapper", "repr": expected_repr}}
    assert params.problems == ["logfile: _io.TextIOWrapper cannot be recorded faithfully"]


def test_set_becomes_sorted_list() -> None:
    assert record_params({"tags": {"b", "c", "a"}}).values == {"tags": ["a", "b", "c"]}


# --- record_params: redaction ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["api_key", "db_password", "token"])
def test_secret_named_param_is_redacted(name: str) -> None:
    params = record_params({name: "s3cr3t", "lr": 0.1})
    assert params.values == {name: REDACTED, "lr": 0.1}
    assert params.redacted == [name]


def test_secret_named_nested_param_is_redacted_with_its_path() -> None:
    params = record_params({"db": {"host": "h", "password": "pw"}})
    assert params.values == {"db": {"host": "h", "password": REDACTED}}
    assert params.redacted == ["db.password"]


def test_secret_looking_value_under_innocent_name_is_redacted() -> None:
    params = record_params({"note": GITHUB_TOKEN})
    assert params.values == {"note": REDACTED}
    assert params.redacted == ["note"]


def test_tokenizer_param_is_not_redacted() -> None:
    params = record_params({"tokenizer": "bert-base-uncased"})
    assert params.values == {"tokenizer": "bert-base-uncased"}
    assert params.redacted == []


def test_list_of_strings_under_secret_name_is_redacted() -> None:
    params = record_params({"api_key": ["k-one", "k-two"]})
    assert "k-one" not in str(params.values)


def test_int_under_secret_name_is_redacted() -> None:
    params = record_params({"db_password": 123456})
    assert params.values == {"db_password": REDACTED}


# --- pydantic -------------------------------------------------------------------------------


def test_record_params_from_nested_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Inner(pydantic.BaseModel):
        lr: float = 0.1

    class Outer(pydantic.BaseModel):
        name: str = "run"
        inner: Inner = Inner()

    params = record_params({"cfg": Outer()})
    assert params.values == {"cfg": {"name": "run", "inner": {"lr": 0.1}}}
    assert params.types["cfg"].endswith("Outer")
