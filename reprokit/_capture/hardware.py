"""Describe the machine a run used: OS, CPU, memory, NVIDIA GPUs, and torch/BLAS numerics settings.

Everything here is cheap and read-only. NVML is called through ctypes (no pynvml import).
Optional modules (psutil, xml, numpy, torch) are imported inside the functions that need them so
``import reprokit`` stays light, and torch/numpy are only *looked at* when the user's program
already imported them. GPU serial numbers and UUIDs identify a physical board, so they are never
copied into the output.
"""

from __future__ import annotations

import os
import re
import sys

from reprokit._capture import unavailable, which
from reprokit._model.protocol import ChildProtocol

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# CPU flags that change floating-point results or which kernels a numerics library picks.
# x86 names as in /proc/cpuinfo "flags"; ARM names as in /proc/cpuinfo "Features".
NUMERIC_CPU_FLAGS: frozenset[str] = frozenset(
    {
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx_vnni",
        "avx512f",
        "avx512dq",
        "avx512bw",
        "avx512vl",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "amx_bf16",
        "amx_tile",
        "amx_int8",
        "amx_fp16",
        "neon",
        "asimd",
        "asimdhp",
        "asimddp",
        "fphp",
        "bf16",
        "i8mm",
        "sve",
        "sve2",
    }
)

# The fields asked of nvidia-smi, in order. uuid and serial are deliberately absent.
_SMI_QUERY_FIELDS = ("index", "name", "memory.total", "driver_version", "compute_cap")
_SMI_TIMEOUT_S = 5.0
_CPUINFO_READ_CHARS = 64 * 1024

_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}

_MEMORY_UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
# Compiled at first use (re's own cache): most processes never parse nvidia-smi's banner.
_CUDA_VERSION = r"CUDA(?:\s+Driver)?\s+Version\s*:\s*(\d+(?:\.\d+)*)"


def capture_hardware() -> dict[str, Any]:
    """A YAML-ready description of this machine; parts that cannot be read say ``unavailable``.

    Keys: ``host`` (see ``host_identity``), ``os``, ``cpu``, ``memory_bytes``, ``gpus``,
    ``gpu_source``; plus ``torch`` when torch is already imported and ``blas``/``blas_source``
    when numpy is already imported.
    """
    result = machine_hardware()
    result.update(torch_numerics())
    result.update(blas_numerics())
    return result


def machine_hardware() -> dict[str, Any]:
    """The part of :func:`capture_hardware` that a process cannot change: ``os``, ``cpu``,
    ``memory_bytes``, ``gpus``, ``gpu_source``."""
    result: dict[str, Any] = {
        "host": host_identity(),
        "os": _guard(_os_info),
        "cpu": _guard(_cpu_info),
        "memory_bytes": _guard(_memory_bytes),
    }
    try:
        gpus, source = _gpu_info()
    except Exception as exc:  # _gpu_info guards itself; this is the last line of defence
        gpus, source = unavailable(exc), "none"
    result["gpus"] = gpus
    result["gpu_source"] = source
    return result


_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_HOST_SALT = b"reprokit host identity 1\0"


def host_identity() -> str:
    """Which machine this is, without saying it: ``sha256:`` and the SHA-256 of a fixed salt
    and the machine id (``/etc/machine-id``; the host name where there is none). The raw id
    is never kept: systemd asks that it not leave the machine. Equal on every run this machine
    records; a replay compares it to tell runs made here from runs made elsewhere."""
    override = ChildProtocol.from_env().machine_id_file
    raw = b""
    for path in (override,) if override else _MACHINE_ID_FILES:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(256).strip()
        except OSError:
            continue
        if raw:
            break
    if not raw:
        import socket

        try:
            raw = b"hostname:" + socket.gethostname().encode("utf-8", "replace")
        except OSError:
            raw = b"hostname:"
    import hashlib

    return "sha256:" + hashlib.sha256(_HOST_SALT + raw).hexdigest()


def torch_numerics() -> dict[str, Any]:
    """``{"torch": settings}`` when torch is already imported (its flags can change at any
    moment: read on every call), else {}. Importing torch costs seconds: never done here."""
    if "torch" not in sys.modules:
        return {}
    return {"torch": _guard(_torch_info)}


def blas_numerics() -> dict[str, Any]:
    """``{"blas", "blas_source"}`` when numpy is already imported, else {}."""
    if "numpy" not in sys.modules:
        return {}
    try:
        blas, source = _blas_info()
    except Exception as exc:
        blas, source = unavailable(exc), "none"
    return {"blas": blas, "blas_source": source}


# --------------------------------------------------------------------------------------- parsers


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """``{"model", "features"}`` from Linux /proc/cpuinfo text (x86 or ARM); None when absent."""
    fields = _first_fields(text)
    # x86 says "model name", POWER says "cpu"; x86's bare "model" is a number, so it is not used.
    model = fields.get("model name") or fields.get("cpu") or None
    if model is None and "cpu implementer" in fields:
        # ARM kernels give no model name; implementer + part number identify the core design.
        impl = fields["cpu implementer"].lower()
        vendor = _ARM_IMPLEMENTERS.get(impl, f"implementer {impl}")
        part = fields.get("cpu part")
        model = f"{vendor} part {part}" if part else vendor
    model = model or fields.get("hardware") or None
    flags = fields.get("flags") or fields.get("features") or ""
    return {"model": model, "features": _numeric_features(flags)}


def parse_lscpu(text: str) -> dict[str, Any]:
    """``{"model", "features"}`` from ``lscpu`` output ("Model name:" and "Flags:" lines)."""
    fields = _first_fields(text)
    return {
        "model": fields.get("model name") or None,
        "features": _numeric_features(fields.get("flags", "")),
    }


def parse_nvidia_smi_csv(text: str) -> list[dict[str, Any]]:
    """GPU dicts from ``nvidia-smi --query-gpu=... --format=csv`` output; header/units tolerated.

    The query is ``index,name,memory.total,driver_version,compute_cap`` with ``noheader,nounits``.
    With a header line, columns are read by name in any order and units ("143771 MiB") are fine;
    unknown columns, uuid included, are dropped. Without one, columns follow the query above.
    ``cuda`` is None: the query cannot report it (see :func:`cuda_version_from_smi_header`).
    """
    import csv

    columns: list[str] = list(_SMI_QUERY_FIELDS)
    gpus: list[dict[str, Any]] = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells):
            continue
        if cells[0].lower().startswith("index") or cells[0].lower() in ("name", "gpu_name"):
            # A header names the columns: "memory.total [MiB]" -> "memory.total".
            columns = [re.sub(r"\s*\[.*?\]\s*$", "", c).lower() for c in cells]
            continue
        values = dict(zip(columns, cells, strict=False))
        gpus.append(
            _gpu_dict(
                index=_to_int(values.get("index"), default=len(gpus)),
                name=_na(values.get("name", values.get("gpu_name"))),
                memory_bytes=_memory_to_bytes(values.get("memory.total"), default_unit="mib"),
                driver=_na(values.get("driver_version")),
                cuda=None,
                compute_capability=_na(values.get("compute_cap")),
            )
        )
    return gpus


def parse_nvidia_smi_xml(text: str) -> list[dict[str, Any]]:
    """GPU dicts from ``nvidia-smi -q -x`` output, with driver and CUDA versions from its header.

    The XML carries no compute capability, so ``compute_capability`` is None. Serial numbers and
    UUIDs in the XML are never read.
    """
    import xml.etree.ElementTree as ET

    # The report starts with a DOCTYPE naming a DTD that is not shipped; ElementTree ignores it
    # and never fetches it, so the text can be parsed as is.
    root = ET.fromstring(text)
    driver = _na(root.findtext("driver_version"))
    cuda = _na(root.findtext("cuda_version"))
    gpus: list[dict[str, Any]] = []
    # nvidia-smi lists GPUs in index order; <minor_number> is the /dev node, not the index.
    for index, gpu in enumerate(root.findall("gpu")):
        gpus.append(
            _gpu_dict(
                index=index,
                name=_na(gpu.findtext("product_name")),
                memory_bytes=_memory_to_bytes(gpu.findtext("fb_memory_usage/total")),
                driver=driver,
                cuda=cuda,
                compute_capability=None,
            )
        )
    return gpus


def cuda_version_from_smi_header(text: str) -> str | None:
    """The driver's CUDA version ("13.0") from plain ``nvidia-smi`` (or ``--version``) output."""
    match = re.search(_CUDA_VERSION, text, re.IGNORECASE)
    return match.group(1) if match else None


# -------------------------------------------------------------------------------------- sections


def _os_info() -> dict[str, Any]:
    if hasattr(os, "uname"):
        # What platform.uname() returns on POSIX, without importing platform (a few ms).
        uname: Any = os.uname()
        return {
            "system": uname.sysname or None,
            "release": uname.release or None,
            "version": uname.version or None,
            "machine": uname.machine or None,
        }
    import platform

    uname = platform.uname()
    return {
        "system": uname.system or None,
        "release": uname.release or None,
        "version": uname.version or None,
        "machine": uname.machine or None,
    }


def _cpu_info() -> dict[str, Any]:
    model: Any
    features: Any
    try:
        model, features = _cpu_model_and_features()
    except Exception as exc:
        model = features = unavailable(exc)
    return {
        "model": model,
        "physical_cores": _guard(_physical_cores),
        "logical_cores": _guard(os.cpu_count),
        "features": features,
    }


def _cpu_model_and_features() -> tuple[Any, Any]:
    if sys.platform.startswith("linux"):
        # The first processor's block is all we need; on many-core hosts the whole file is
        # hundreds of KiB that the kernel generates per read, so stop early.
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            parsed = parse_cpuinfo(fh.read(_CPUINFO_READ_CHARS))
        return parsed["model"], parsed["features"]
    import platform

    model: Any = None
    if sys.platform == "darwin":
        try:
            model = _run_text(["sysctl", "-n", "machdep.cpu.brand_string"]).strip() or None
        except Exception:
            pass  # platform.processor() below is the coarser answer
    model = model or platform.processor() or None
    # No flag source is read outside Linux; an empty list would claim the CPU has none.
    return model, unavailable(f"CPU feature flags are not read on {sys.platform}")


def _physical_cores() -> int | None:
    if sys.platform.startswith("linux"):
        # psutil's own Linux method, read directly: importing psutil costs ~20 ms cold, more
        # than the rest of this module together.
        cores = _linux_core_count()
        if cores:
            return cores
    import psutil

    return psutil.cpu_count(logical=False)


def _memory_bytes() -> int:
    if sys.platform.startswith("linux"):
        # MemTotal is what psutil.virtual_memory().total reports on Linux (kB * 1024).
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    import psutil

    return int(psutil.virtual_memory().total)


def _linux_core_count() -> int | None:
    """Distinct physical cores from sysfs topology (one sibling list per core), or None."""
    base = "/sys/devices/system/cpu"
    try:
        cpus = [name for name in os.listdir(base) if re.fullmatch(r"cpu\d+", name)]
    except OSError:
        return None
    # core_cpus_list is the current name; thread_siblings_list the deprecated one.
    for leaf in ("core_cpus_list", "thread_siblings_list"):
        siblings = set()
        for cpu in cpus:
            try:
                with open(f"{base}/{cpu}/topology/{leaf}", encoding="ascii") as fh:
                    siblings.add(fh.read().strip())
            except OSError:
                continue
        if siblings:
            return len(siblings)
    return None


# NVML, the driver's own library, called through ctypes: importing pynvml costs ~60 ms (a
# 5,000-line module compiled wherever no bytecode was cached) for the ten calls made here.
NVML_LIBRARY = "nvml.dll" if sys.platform == "win32" else "libnvidia-ml.so.1"
_NVML_BUFFER = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE; the driver version needs 80


def _gpu_info(library: str = NVML_LIBRARY) -> tuple[list[dict[str, Any]] | str, str]:
    """(gpus, source): NVML when its library loads, else nvidia-smi when on PATH, else none."""
    try:
        return _gpus_from_nvml(library), "nvml"
    except Exception:
        # No NVML library, or no driver behind it: nvidia-smi may still answer.
        pass
    smi = which("nvidia-smi")
    if smi is None:
        return [], "none"
    return _gpus_from_smi(smi), "nvidia-smi"


def _gpus_from_smi(smi: str) -> list[dict[str, Any]] | str:
    """GPU dicts from the ``smi`` executable, or the ``unavailable`` marker when it fails."""
    try:
        query = f"--query-gpu={','.join(_SMI_QUERY_FIELDS)}"
        gpus = parse_nvidia_smi_csv(_run_text([smi, query, "--format=csv,noheader,nounits"]))
    except Exception as exc:
        return unavailable(exc)
    if gpus:
        # The query has no CUDA-version field; plain nvidia-smi prints it in its banner.
        cuda: str | None
        try:
            cuda = cuda_version_from_smi_header(_run_text([smi]))
        except Exception as exc:
            cuda = unavailable(exc)
        if cuda is None:
            cuda = unavailable("no CUDA Version in nvidia-smi output")
        for gpu in gpus:
            gpu["cuda"] = cuda
    return gpus


def _gpus_from_nvml(library: str = NVML_LIBRARY) -> list[dict[str, Any]]:
    """GPU dicts from NVML; raises (OSError, RuntimeError) when there is no library or driver."""
    if library == NVML_LIBRARY and sys.platform == "linux" and not os.path.exists("/dev/nvidiactl"):
        # No NVIDIA driver device: NVML cannot answer (and importing ctypes costs ~1.3 ms).
        raise OSError("no /dev/nvidiactl")
    import ctypes

    nvml = ctypes.CDLL(library)

    def call(name: str, *args: Any) -> None:
        fn = getattr(nvml, name + "_v2", None) or getattr(nvml, name)
        rc = fn(*args)
        if rc != 0:
            raise RuntimeError(f"{name}: {_nvml_error(nvml, rc)}")

    def text(name: str, *head: Any) -> str:
        buf = ctypes.create_string_buffer(_NVML_BUFFER)
        call(name, *head, buf, ctypes.c_uint(_NVML_BUFFER))
        return buf.value.decode("utf-8", "replace")

    def number(name: str, *head: Any, kind: Any = ctypes.c_int) -> int:
        out = kind()
        call(name, *head, ctypes.byref(out))
        return int(out.value)

    class Memory(ctypes.Structure):
        _fields_ = [(f, ctypes.c_ulonglong) for f in ("total", "free", "used")]

    def memory(handle: Any) -> int:
        info = Memory()
        # The v1 call: its struct is the same on every driver (v2 adds a version field).
        rc = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(info))
        if rc != 0:
            raise RuntimeError(f"nvmlDeviceGetMemoryInfo: {_nvml_error(nvml, rc)}")
        return int(info.total)

    def capability(handle: Any) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        call("nvmlDeviceGetCudaComputeCapability", handle, ctypes.byref(major), ctypes.byref(minor))
        return f"{major.value}.{minor.value}"

    # nvmlInit_v2 where the driver has it; the v1 names of the calls below are what old drivers
    # export (call() tries "<name>_v2" first).
    call("nvmlInit")
    try:
        driver = _guard(lambda: text("nvmlSystemGetDriverVersion"))
        cuda = _guard(lambda: _cuda_int_to_str(number("nvmlSystemGetCudaDriverVersion")))
        gpus: list[dict[str, Any]] = []
        for index in range(number("nvmlDeviceGetCount", kind=ctypes.c_uint)):
            handle = ctypes.c_void_p()
            try:
                call("nvmlDeviceGetHandleByIndex", ctypes.c_uint(index), ctypes.byref(handle))
            except Exception as exc:
                gpus.append(_gpu_dict(index, *([unavailable(exc)] * 5)))
                continue
            gpus.append(
                _gpu_dict(
                    index=index,
                    name=_guard(lambda: text("nvmlDeviceGetName", handle)),  # noqa: B023
                    memory_bytes=_guard(lambda: memory(handle)),  # noqa: B023
                    driver=driver,
                    cuda=cuda,
                    compute_capability=_guard(lambda: capability(handle)),  # noqa: B023
                )
            )
        return gpus
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_error(nvml: Any, rc: int) -> str:
    """NVML's text for return code ``rc`` ("Not Supported"), or the number."""
    import ctypes

    try:
        fn = nvml.nvmlErrorString
        fn.restype = ctypes.c_char_p
        return f"{fn(rc).decode('utf-8', 'replace')} (NVML error {rc})"
    except Exception:
        return f"NVML error {rc}"


def _torch_info() -> dict[str, Any]:
    import warnings

    torch = sys.modules["torch"]
    # Newer torch versions warn that allow_tf32 is superseded; reading it must stay silent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "version": _guard(lambda: str(torch.__version__)),
            "cuda": _guard(lambda: torch.version.cuda),
            # Reads the linked cuDNN's version number; does not create a CUDA context.
            "cudnn": _guard(lambda: torch.backends.cudnn.version()),
            "cuda_available": _guard(lambda: bool(torch.cuda.is_available())),
            "deterministic_algorithms": _guard(
                lambda: bool(torch.are_deterministic_algorithms_enabled())
            ),
            "cudnn_deterministic": _guard(lambda: bool(torch.backends.cudnn.deterministic)),
            "cudnn_benchmark": _guard(lambda: bool(torch.backends.cudnn.benchmark)),
            "tf32_matmul": _guard(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
            "tf32_cudnn": _guard(lambda: bool(torch.backends.cudnn.allow_tf32)),
            "num_threads": _guard(lambda: int(torch.get_num_threads())),
        }


def _blas_info() -> tuple[list[dict[str, Any]] | str, str]:
    """(libraries, source): loaded BLAS/OpenMP pools via threadpoolctl, else numpy's build info."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        return [
            {
                "internal_api": info.get("internal_api"),
                "version": info.get("version"),
                "num_threads": info.get("num_threads"),
                "filepath": os.path.basename(info.get("filepath") or "") or None,
            }
            for info in threadpool_info()
        ], "threadpoolctl"

    numpy = sys.modules["numpy"]
    name = version = None
    try:
        config = numpy.show_config(mode="dicts")  # numpy >= 1.26 returns a dict, prints nothing
        blas = config["Build Dependencies"]["blas"]
        name, version = blas.get("name"), blas.get("version")
    except TypeError:
        # Older numpy has no mode= (and prints); its build info lives on numpy.__config__.
        info = getattr(numpy.__config__, "blas_opt_info", None) or {}
        libraries = info.get("libraries") or []
        name = ",".join(str(lib) for lib in libraries) or None
    return [
        {"internal_api": name, "version": version, "num_threads": None, "filepath": None}
    ], "numpy.show_config"


# --------------------------------------------------------------------------------------- helpers


def _guard(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the ``unavailable`` marker for whatever it raised."""
    try:
        return fn()
    except Exception as exc:
        return unavailable(exc)


def _gpu_dict(
    index: Any, name: Any, memory_bytes: Any, driver: Any, cuda: Any, compute_capability: Any
) -> dict[str, Any]:
    return {
        "index": index,
        "name": name,
        "memory_bytes": memory_bytes,
        "driver": driver,
        "cuda": cuda,
        "compute_capability": compute_capability,
    }


def _run_text(argv: list[str]) -> str:
    import subprocess

    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=_SMI_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"{os.path.basename(argv[0])} exited {proc.returncode}: {detail}")
    return proc.stdout


def _first_fields(text: str) -> dict[str, str]:
    """Lower-cased "key: value" pairs, first occurrence wins (cpuinfo repeats them per core)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _numeric_features(flags: str) -> list[str]:
    return sorted(NUMERIC_CPU_FLAGS.intersection(flags.lower().split()))


def _na(value: str | None) -> str | None:
    """None for nvidia-smi's ways of saying "no value"."""
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "N/A", "[N/A]", "[Not Supported]", "Not Supported") else value


def _to_int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _memory_to_bytes(value: str | None, default_unit: str = "b") -> int | None:
    """ "143771 MiB" (or a bare number in ``default_unit``) -> bytes; None when not a size."""
    value = _na(value)
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?", value, re.IGNORECASE)
    if not match:
        return None
    unit = (match.group(2) or default_unit).lower()
    factor = _MEMORY_UNITS.get(unit if "i" in unit or unit == "b" else unit[0] + "ib")
    return int(float(match.group(1)) * factor) if factor else None


def _cuda_int_to_str(version: int) -> str:
    """NVML's 13000 -> "13.0" (major * 1000 + minor * 10)."""
    return f"{version // 1000}.{(version % 1000) // 10}"
