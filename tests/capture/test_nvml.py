"""GPU facts from NVML through ctypes (no pynvml): a real shared library built from C here that
answers as the H200 host's driver did (tests/fixtures/gpu-h200/py-gpu.txt), and the ways NVML
can be missing or fail, none of which may raise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# What NVML said on the H200 host (py-gpu.txt: name, memory, driver, CUDA driver, capability).
FAKE_NVML = r"""
#include <string.h>
typedef struct { unsigned long long total, free, used; } mem_t;
static int up = 0;
int nvmlInit_v2(void) { return FAIL_INIT; }
int nvmlShutdown(void) { up = 0; return 0; }
const char *nvmlErrorString(int rc) { return rc == 3 ? "Not Supported" : "Unknown Error"; }
int nvmlSystemGetDriverVersion(char *buf, unsigned n) { strncpy(buf, "580.159.04", n); return 0; }
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 13000; return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) { *h = (void *)0x1234; return i ? 2 : 0; }
int nvmlDeviceGetName(void *h, char *buf, unsigned n) {
    if (NAME_FAILS) return 3;
    strncpy(buf, "NVIDIA H200", n); return 0;
}
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    m->total = 150754820096ULL; m->free = 1; m->used = 2; return 0;
}
int nvmlDeviceGetCudaComputeCapability(void *h, int *major, int *minor) {
    *major = 9; *minor = 0; return 0;
}
"""

PROBE = """
import json, sys
from reprokit._capture import hardware
gpus, source = hardware._gpu_info(sys.argv[1])
print(json.dumps({"gpus": gpus, "source": source, "pynvml": "pynvml" in sys.modules}))
"""


def build(tmp_path: Path, fail_init: int = 0, name_fails: int = 0) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in NVML library")
    src = tmp_path / "nvml.c"
    src.write_text(FAKE_NVML)
    lib = tmp_path / f"libnvidia-ml-{fail_init}-{name_fails}.so.1"
    flags = [f"-DFAIL_INIT={fail_init}", f"-DNAME_FAILS={name_fails}"]
    subprocess.run([cc, "-shared", "-fPIC", *flags, "-o", str(lib), str(src)], check=True)
    return str(lib)


def probe(library: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, library], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_nvml_through_ctypes_records_what_pynvml_recorded_on_the_h200_host(tmp_path):
    out = probe(build(tmp_path))
    assert out["source"] == "nvml"
    assert out["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_bytes": 150754820096,
            "driver": "580.159.04",
            "cuda": "13.0",
            "compute_capability": "9.0",
        }
    ]
    assert out["pynvml"] is False


def test_a_failing_nvml_call_marks_only_its_field_unavailable(tmp_path):
    (gpu,) = probe(build(tmp_path, name_fails=1))["gpus"]
    assert gpu["name"] == "unavailable: nvmlDeviceGetName: Not Supported (NVML error 3)"
    assert gpu["memory_bytes"] == 150754820096


def expected_without_nvml() -> tuple[str, ...]:
    return ("nvidia-smi",) if shutil.which("nvidia-smi") else ("none",)


def test_an_nvml_without_a_driver_falls_back_and_never_raises(tmp_path):
    out = probe(build(tmp_path, fail_init=9))  # NVML_ERROR_DRIVER_NOT_LOADED
    assert out["source"] in expected_without_nvml()
    if out["source"] == "none":
        assert out["gpus"] == []


def test_no_nvml_library_falls_back_and_never_raises(tmp_path):
    out = probe(str(tmp_path / "libnvidia-ml-absent.so.1"))
    assert out["source"] in expected_without_nvml()
    if out["source"] == "none":
        assert out["gpus"] == []
    assert out["pynvml"] is False
