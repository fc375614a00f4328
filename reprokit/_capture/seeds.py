"""Draw, apply and record seeds: what was seeded, with what, and the determinism state."""

from __future__ import annotations

import os
import random
import sys

from reprokit._errors import ReprokitError

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

MAX_SEED = 2**32 - 1  # numpy's legacy RNG accepts 0 .. 2**32-1; every library takes that range


def draw_seed() -> int:
    """A fresh seed from the OS's secure source, in the range every library accepts."""
    # os.urandom is the source the secrets module draws from; 4 bytes cover 0..2**32-1 exactly.
    return int.from_bytes(os.urandom(4), "big")


def check_seed(seed: Any) -> int:
    """``seed`` as an int, or ReprokitError naming what was wrong with it."""
    if isinstance(seed, bool) or type(seed).__name__ == "bool_":
        raise ReprokitError(f"seed must be an integer in 0..{MAX_SEED}, got a bool {seed!r}")
    if not isinstance(seed, int):
        try:
            import operator

            seed = operator.index(seed)  # numpy integers
        except TypeError:
            raise ReprokitError(
                f"seed must be an integer in 0..{MAX_SEED}, got {type(seed).__name__} {seed!r}"
            ) from None
    if not 0 <= seed <= MAX_SEED:
        raise ReprokitError(f"seed must be an integer in 0..{MAX_SEED}, got {seed}")
    return int(seed)


def hash_state() -> dict[str, Any]:
    """PYTHONHASHSEED as set, and whether str/bytes hashing is randomized in this process."""
    return {
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
        "hash_randomization": bool(sys.flags.hash_randomization),
    }


def seed_everything(seed: int, deterministic: bool = False) -> dict[str, Any]:
    """Seed every RNG the process has imported with exactly ``seed``; return what was done.

    ``random.seed(s)``, ``numpy.random.seed(s)``, ``torch.manual_seed(s)`` (CPU and every CUDA
    device), ``tf.random.set_seed(s)``: a script that seeded by hand gets the same numbers.
    Libraries not yet imported are left alone (importing them here would cost seconds).
    """
    seed = check_seed(seed)
    remember_seed(seed)
    seeded: dict[str, Any] = {}
    random.seed(seed)
    seeded["python"] = {"seed": seed, "version": sys.version.split()[0]}
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        try:
            np.random.seed(seed)
            seeded["numpy"] = {"seed": seed, "version": np.__version__}
        except Exception as exc:
            seeded["numpy"] = {"error": f"{type(exc).__name__}: {exc}"}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        try:
            torch.manual_seed(seed)  # also seeds every CUDA device (lazily if not initialised)
            seeded["torch"] = {"seed": seed, "version": torch.__version__}
            if torch.cuda.is_available():
                seeded["torch.cuda"] = {"seed": seed, "devices": torch.cuda.device_count()}
        except Exception as exc:
            seeded["torch"] = {"error": f"{type(exc).__name__}: {exc}"}
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "random"):
        try:
            tf.random.set_seed(seed)
            seeded["tensorflow"] = {"seed": seed, "version": tf.__version__}
        except Exception as exc:
            seeded["tensorflow"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "jax" in sys.modules:
        seeded["jax"] = {"note": "explicit keys: not seedable globally"}
    state: dict[str, Any] = {"seed": seed, "seeded": seeded, **hash_state()}
    state["deterministic"] = _set_deterministic(deterministic)
    return state


def _set_deterministic(on: bool) -> dict[str, Any]:
    """Switch deterministic mode where asked, then read back what the libraries actually do."""
    out: dict[str, Any] = {"requested": on}
    torch = sys.modules.get("torch")
    if on:
        if torch is None or not torch.cuda.is_initialized():
            # cuBLAS reads this when CUDA initialises; later it is too late.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if torch is not None:
            try:
                torch.use_deterministic_algorithms(True)
                torch.backends.cudnn.deterministic = True
                torch.backends.cudnn.benchmark = False
            except Exception as exc:
                out["torch_error"] = f"{type(exc).__name__}: {exc}"
        tf = sys.modules.get("tensorflow")
        if tf is not None:
            try:
                tf.config.experimental.enable_op_determinism()
            except Exception as exc:
                out["tensorflow_error"] = f"{type(exc).__name__}: {exc}"
    if torch is not None and hasattr(torch, "are_deterministic_algorithms_enabled"):
        try:
            out["torch"] = {
                "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
                "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            }
        except Exception:
            pass
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if cublas is not None:
        out["cublas_workspace_config"] = cublas
    return out


_last_seed: list[int] = []


def remember_seed(seed: int) -> None:
    """Note the process's master seed, for ``derive_seed`` calls that give none."""
    _last_seed[:] = [seed]


def derive_seed(name: str, seed: int | None = None) -> int:
    """A stable sub-seed for ``name``: SHA-256 of the master seed and the name, never ``hash()``.

    Without ``seed``, the active run's seed (or the last ``seed_everything`` seed) is the master.
    """
    import hashlib

    if seed is None:
        from reprokit._run import current_run

        active = current_run()
        if active is not None:
            seed = active.seed
        elif _last_seed:
            seed = _last_seed[0]
        else:
            raise ReprokitError(
                "derive_seed needs a master seed: pass seed=, or call it inside a run "
                "or after seed_everything()"
            )
    seed = check_seed(seed)
    digest = hashlib.sha256(f"reprokit-derive-1:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)
