"""Draw, apply and record seeds: what was seeded, with what, and the determinism state."""

from __future__ import annotations

import contextvars
import os
import random
import sys
from _thread import get_ident

from reprokit._model.errors import ReprokitError, warn
from reprokit._model.loader import WrappedLoader
from reprokit._model.protocol import ChildProtocol, getenv

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
        "pythonhashseed": getenv("PYTHONHASHSEED"),
        "hash_randomization": bool(sys.flags.hash_randomization),
    }


_hash_warned = False  # the hash warning is about the process, so it is said once per process


def silence_hash_warning() -> None:
    """Say nothing about hash randomization in this process (a worker: its starter said it)."""
    global _hash_warned
    _hash_warned = True


def _warn_hash_randomization() -> None:
    global _hash_warned
    if _hash_warned or not sys.flags.hash_randomization:
        return
    value = getenv("PYTHONHASHSEED")
    if value not in (None, "random"):
        return
    _hash_warned = True
    shown = "unset" if value is None else "=random"
    warn(
        f"hash randomization is on (PYTHONHASHSEED {shown}): set and str-keyed dict "
        "iteration order may vary between runs; run under `reprokit run` or set PYTHONHASHSEED=0",
    )


# -- one seeder per library: each takes the seed, returns {"seed", "version"} or raises --------


def _seed_numpy(seed: int, rng: Any) -> dict[str, Any]:
    rng.seed(seed)  # the legacy global RandomState, as np.random.seed(s) by hand
    np = sys.modules.get("numpy")
    return {"seed": seed, "version": getattr(np, "__version__", None)}


def _seed_torch(seed: int, torch: Any) -> dict[str, Any]:
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily if not initialised)
    return {"seed": seed, "version": torch.__version__}


def _seed_tensorflow(seed: int, tf: Any) -> dict[str, Any]:
    tf.random.set_seed(seed)
    return {"seed": seed, "version": tf.__version__}


def _seed_keras(seed: int, keras: Any) -> dict[str, Any]:
    # Keras 3 keeps its own global seed for keras.random / SeedGenerator; only this call sets it.
    keras.utils.set_random_seed(seed)
    return {"seed": seed, "version": getattr(keras, "__version__", None)}


def _seed_cupy(seed: int, cupy: Any) -> dict[str, Any]:
    cupy.random.seed(seed)  # the current device's generator
    return {"seed": seed, "version": cupy.__version__}


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}


JAX_NOTE = {"note": "explicit keys: not seedable globally", "key_helper": "reprokit.jax_key(name)"}


_sweep_seed: list[int | None] = [None]  # set by across_seeds() while it calls a function


def sweep_seed() -> int | None:
    """The seed a seed sweep (``reprokit seeds``, ``across_seeds``) imposes on this process,
    or None."""
    if _sweep_seed[0] is not None:
        return _sweep_seed[0]
    return ChildProtocol.from_env().seed_override


def set_sweep_seed(seed: int | None) -> None:
    """Impose ``seed`` on this process's seeding (None: stop)."""
    _sweep_seed[0] = seed


def seed_everything(seed: int, deterministic: bool = False) -> dict[str, Any]:
    """Seed every RNG the process has imported with exactly ``seed``; return what was done.

    ``random.seed(s)``, ``numpy.random.seed(s)``, ``torch.manual_seed(s)`` (CPU and every CUDA
    device), ``tf.random.set_seed(s)``, ``keras.utils.set_random_seed(s)``,
    ``cupy.random.seed(s)``: a script that seeded by hand gets the same numbers. Libraries not
    yet imported are not imported here (that would cost seconds); an import hook seeds them
    with the newest seed the moment their import completes (see ``late_seeded``).
    """
    seed = check_seed(seed)
    # Under a seed sweep the sweep's seed wins over the one a program hard-codes here, so the
    # sweep varies what it claims to; the state says which seed was asked for.
    swept = sweep_seed()
    asked = None
    if swept is not None and swept != seed:
        asked, seed = seed, swept
    remember_seed(seed)
    _hook_deterministic[:] = [bool(deterministic)]
    _install_hook()
    me = get_ident()
    _busy.add(me)
    try:
        state = _seed_all(seed, deterministic)
    finally:
        _busy.discard(me)
    if asked is not None:
        state["asked"] = asked
        state["overridden_by"] = "seed sweep"
    return state


def _seed_all(seed: int, deterministic: bool) -> dict[str, Any]:
    seeded: dict[str, Any] = {}
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "utils"):
        # First: it also reseeds random/numpy/tf, which are all seeded again below anyway.
        try:
            seeded["keras"] = _seed_keras(seed, keras)
        except Exception as exc:
            seeded["keras"] = _failed(exc)
    random.seed(seed)
    seeded["python"] = {"seed": seed, "version": sys.version.split()[0]}
    _seed_libraries(seed, seeded)
    if "jax" in sys.modules:
        seeded["jax"] = dict(JAX_NOTE)
    _warn_hash_randomization()
    state: dict[str, Any] = {"seed": seed, "seeded": seeded, **hash_state()}
    state["deterministic"] = _set_deterministic(deterministic)
    # Deterministic mode can load more (torch.use_deterministic_algorithms imports parts of
    # torch that load numpy.random): seeded here, inside seed_everything, like the rest.
    _seed_libraries(seed, seeded)
    return state


def _seed_libraries(seed: int, seeded: dict[str, Any]) -> None:
    """Seed each loaded library not in ``seeded`` yet, and note it there.

    numpy's RNG counts as loaded with numpy.random: numpy 2 loads it on first use, and a
    program that has not used it yet is not made to load it (milliseconds, e.g. under PyTorch,
    which imports numpy); the import hook seeds it when it loads."""
    # (library, the module whose presence shows it is loaded, the attribute that shows it is
    # complete, how to seed it)
    for name, loaded, marker, seeder in (
        ("numpy", "numpy.random", "seed", _seed_numpy),
        ("torch", "torch", "manual_seed", _seed_torch),
        ("tensorflow", "tensorflow", "random", _seed_tensorflow),
        ("cupy", "cupy", "random", _seed_cupy),
    ):
        module = sys.modules.get(loaded)
        if name in seeded or module is None or not hasattr(module, marker):
            continue
        try:
            seeded[name] = seeder(seed, module)
            if name == "torch" and module.cuda.is_available():
                seeded["torch.cuda"] = {"seed": seed, "devices": module.cuda.device_count()}
        except Exception as exc:
            seeded[name] = _failed(exc)


_cublas_warned = False
_cublas_late = False  # we set CUBLAS_WORKSPACE_CONFIG after CUDA was up: may not be in effect


def _set_deterministic(on: bool) -> dict[str, Any]:
    """Switch deterministic mode where asked, then read back what the libraries actually do."""
    global _cublas_warned, _cublas_late
    out: dict[str, Any] = {"requested": on}
    torch = sys.modules.get("torch")
    if on:
        if getenv("CUBLAS_WORKSPACE_CONFIG") is None:
            cuda_up = False
            if torch is not None:
                try:
                    cuda_up = bool(torch.cuda.is_initialized())
                except Exception:
                    pass
            # Set even when late: child processes inherit it, and torch's deterministic
            # check reads it on every cuBLAS call.
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
            if cuda_up:
                _cublas_late = True
                if not _cublas_warned:
                    _cublas_warned = True
                    warn(
                        "deterministic mode: CUDA is already initialised, so "
                        "CUBLAS_WORKSPACE_CONFIG=:4096:8 set now may be too late for cuBLAS; "
                        "set CUBLAS_WORKSPACE_CONFIG=:4096:8 before the process starts, or call "
                        "seed_everything before any CUDA work",
                    )
        if torch is not None:
            try:
                _torch_deterministic_on(torch)
            except Exception as exc:
                out["torch_error"] = f"{type(exc).__name__}: {exc}"
        tf = sys.modules.get("tensorflow")
        if tf is not None:
            try:
                tf.config.experimental.enable_op_determinism()
            except Exception as exc:
                out["tensorflow_error"] = f"{type(exc).__name__}: {exc}"
    if torch is not None:
        state = _torch_deterministic_state(torch)
        if state is not None:
            out["torch"] = state
    tf_state = _tf_determinism_state()
    if tf_state is not None:
        out["tensorflow"] = {"op_determinism": tf_state}
    cublas = getenv("CUBLAS_WORKSPACE_CONFIG")
    if cublas is not None:
        out["cublas_workspace_config"] = cublas
        if _cublas_late:
            out["cublas_set_after_cuda_init"] = True
    out["threads"] = _thread_settings(torch)
    return out


def _torch_deterministic_on(torch: Any) -> None:
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _torch_deterministic_state(torch: Any) -> dict[str, Any] | None:
    try:
        return {
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        }
    except Exception:
        return None


def _tf_determinism_state() -> bool | None:
    # TF has no public getter; its config module (loaded with tensorflow) has one.
    config = sys.modules.get("tensorflow.python.framework.config")
    getter = getattr(config, "is_op_determinism_enabled", None)
    if getter is None:
        return None
    try:
        return bool(getter())
    except Exception:
        return None


def _thread_settings(torch: Any) -> dict[str, Any]:
    """Thread counts change reduction order in BLAS/OpenMP kernels, so float results too."""
    threads: dict[str, Any] = {
        "OMP_NUM_THREADS": getenv("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": getenv("MKL_NUM_THREADS"),
    }
    if torch is not None:
        try:
            threads["torch"] = int(torch.get_num_threads())
        except Exception:
            pass
    return threads


# -- seeding libraries imported after seed_everything ---------------------------------------

# Modules whose import completing means "seed this library now" (numpy's RNG: numpy.random,
# which numpy 2 loads on first use, numpy 1 with numpy itself).
_WATCHED = frozenset({"numpy.random", "torch", "tensorflow", "keras", "cupy"})
_late: dict[str, dict[str, Any]] = {}
_hook_deterministic: list[bool] = [False]
# Threads inside seed_everything: an import it causes (keras may import tensorflow) is seeded
# and recorded by seed_everything itself, not as a late import.
_busy: set[int] = set()


def late_seeded() -> dict[str, dict[str, Any]]:
    """Libraries the import hook seeded since the last ``reset_late_seeded()``.

    ``{lib: {"seed": s, "version": v, "at": "import"}}`` (``"error"`` instead when seeding
    failed; ``"deterministic"`` read back when deterministic mode was asked for).
    """
    return {lib: dict(entry) for lib, entry in _late.items()}


def reset_late_seeded() -> None:
    """Forget what the import hook seeded so far (a run calls this when it starts)."""
    _late.clear()


def _seed_on_import(lib: str) -> None:
    """Seed the library whose import just completed; never raises."""
    try:
        if not _last_seed or get_ident() in _busy:
            return
        seed = _last_seed[0]
        module = sys.modules.get(lib)
        if module is None:
            return
        try:
            if lib == "numpy.random":
                entry = _seed_numpy(seed, module)
                lib = "numpy"
            elif lib == "torch":
                entry = _seed_torch(seed, module)
            elif lib == "tensorflow":
                entry = _seed_tensorflow(seed, module)
            elif lib == "keras":
                entry = _seed_keras_keeping_streams(seed, module)
            else:
                entry = _seed_cupy(seed, module)
            if _hook_deterministic[0] and lib in ("torch", "tensorflow"):
                entry["deterministic"] = _deterministic_on_import(lib, module)
        except Exception as exc:
            entry = _failed(exc)
        entry["at"] = "import"
        _late[lib] = entry
    except Exception:
        pass  # an import must never fail because of us


def _seed_keras_keeping_streams(seed: int, keras: Any) -> dict[str, Any]:
    """Seed Keras without rewinding random/numpy/torch, which set_random_seed also reseeds.

    Those streams were seeded at seed_everything and may be in use by now; rewinding them at
    an import would make the numbers depend on where the import happens.
    """
    saved_random = random.getstate()
    np_random = sys.modules.get("numpy.random")
    saved_np = np_random.get_state() if np_random is not None else None
    torch = sys.modules.get("torch")
    saved_torch = torch.get_rng_state() if torch is not None else None
    try:
        return _seed_keras(seed, keras)
    finally:
        random.setstate(saved_random)
        if saved_np is not None and np_random is not None:
            np_random.set_state(saved_np)
        if saved_torch is not None and torch is not None:
            torch.set_rng_state(saved_torch)


def _deterministic_on_import(lib: str, module: Any) -> bool | None:
    if lib == "torch":
        _torch_deterministic_on(module)
        return bool(module.are_deterministic_algorithms_enabled())
    module.config.experimental.enable_op_determinism()
    return _tf_determinism_state()


class _SeedingLoader(WrappedLoader):
    """Runs the module, then seeds it."""

    def execute(self, module: Any) -> None:
        self.loader.exec_module(module)
        _seed_on_import(self.name)


class _SeedOnImport:
    """``sys.meta_path`` finder: seeds numpy/torch/tensorflow/keras/cupy imported late.

    For any other name it returns None after one dict lookup; for a watched name it asks the
    finders after it, exactly as the import system would, and wraps the loader they return.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _WATCHED:
            return None
        spec = None
        for finder in list(sys.meta_path):  # a copy: finders may edit meta_path
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                return None  # a legacy finder: let the import system keep its own order
            spec = find(fullname, path, target)
            if spec is not None:
                break
        if spec is None:
            return None
        try:
            loader = spec.loader
            if loader is not None and hasattr(loader, "exec_module"):
                spec.loader = _SeedingLoader(loader, fullname)
        except Exception:
            pass  # unseeded is better than a broken import
        return spec


_hook = _SeedOnImport()


def _install_hook() -> None:
    """Put the finder first in ``sys.meta_path``, once per process."""
    if not any(isinstance(f, _SeedOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _hook)


_last_seed: list[int] = []
# The seed of the run active in this thread/task: set by the recording layer, which is told
# nothing back (seeding never asks who is recording).
CURRENT_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "reprokit_seed", default=None
)


def remember_seed(seed: int) -> None:
    """Note the process's master seed, for ``derive_seed`` calls that give none."""
    _last_seed[:] = [seed]


def derive_seed(name: str, seed: int | None = None) -> int:
    """A stable sub-seed for ``name``: SHA-256 of the master seed and the name, never ``hash()``.

    Without ``seed``, the active run's seed (or the last ``seed_everything`` seed) is the master.
    """
    import hashlib

    if seed is None:
        active = CURRENT_SEED.get()
        if active is not None:
            seed = active
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


def worker_init_fn(worker_id: int) -> None:
    """A ready ``DataLoader(worker_init_fn=...)``: seeds the worker from the run's seed.

    ``random``, numpy's legacy RNG (if imported) and torch (if imported) get
    ``derive_seed(f"dataloader-worker-{worker_id}")``; a forked worker inherits the master seed.
    """
    if isinstance(worker_id, bool) or not isinstance(worker_id, int):
        raise ReprokitError(f"worker_id must be an int, got {type(worker_id).__name__}")
    try:
        seed = derive_seed(f"dataloader-worker-{worker_id}")
    except ReprokitError:
        # A spawned worker starts without our state; raising would kill the DataLoader.
        if _torch_seeded_this_worker():
            # torch gave this worker base_seed + id (random and numpy too), base_seed drawn from
            # the starting process's torch RNG, which the run seeded: reproducible as it is.
            return
        warn(
            f"worker_init_fn({worker_id}): no master seed in this worker process (spawned, not "
            "forked?); the DataLoader's own per-worker seeds stay in place",
        )
        return
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed(seed)
        except Exception:
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.manual_seed(seed)
        except Exception:
            pass


def _torch_seeded_this_worker() -> bool:
    """Whether this process is a DataLoader worker that torch seeded itself."""
    data = sys.modules.get("torch.utils.data")
    try:
        return data is not None and data.get_worker_info() is not None
    except Exception:
        return False


def jax_key(name: str | None = None, seed: int | None = None) -> Any:
    """``jax.random.PRNGKey(derive_seed(name or "jax", seed))``: JAX's explicit key, from the run.

    JAX has no global RNG to seed, so this is how a JAX program ties its keys to the run's seed.
    """
    try:
        import jax
    except ImportError:
        raise ReprokitError("jax_key needs JAX, which is not installed: pip install jax") from None
    return jax.random.PRNGKey(derive_seed(name or "jax", seed))
