"""Hardware capture: parsers against real H200 host output, and capture on this machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from reprokit._capture.hardware import (
    capture_hardware,
    cuda_version_from_smi_header,
    parse_cpuinfo,
    parse_lscpu,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu-h200"
H200_MEMORY_BYTES = 143771 * 1024 * 1024
GPU_KEYS = {"index", "name", "memory_bytes", "driver", "cuda", "compute_capability"}


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _xml_text(tag: str) -> str:
    """The first <tag>value</tag> value in the real nvidia-smi XML."""
    match = re.search(rf"<{tag}>([^<]+)</{tag}>", _fixture("nvidia-smi-q.xml"))
    assert match, tag
    return match.group(1).strip()


def _host_csv_lines() -> str:
    """The header + row of the `--query-gpu ... --format=csv` call recorded in host.txt."""
    lines = _fixture("host.txt").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("index, name"))
    return "\n".join(lines[start : start + 2])


def _identifiers() -> list[str]:
    """Serial numbers and UUIDs in the XML: none of them may reach a manifest."""
    values = [_xml_text("serial"), _xml_text("uuid"), _xml_text("chassis_serial_number")]
    assert _xml_text("uuid").startswith("GPU-")
    return values


def _assert_no_identifiers(result: object) -> None:
    text = str(result)
    for value in _identifiers():
        assert value not in text
    assert "serial" not in text.lower()
    assert "uuid" not in text.lower()


# ------------------------------------------------------------------------------------------ GPUs


def test_parse_xml_reads_the_h200() -> None:
    gpus = parse_nvidia_smi_xml(_fixture("nvidia-smi-q.xml"))
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_bytes": H200_MEMORY_BYTES,
            "driver": "580.159.04",
            "cuda": "13.0",
            # nvidia-smi -q -x does not report a compute capability.
            "compute_capability": None,
        }
    ]


def test_parse_xml_copies_no_serial_or_uuid() -> None:
    _assert_no_identifiers(parse_nvidia_smi_xml(_fixture("nvidia-smi-q.xml")))


def test_parse_csv_with_header_and_units_from_host_txt() -> None:
    text = _host_csv_lines()
    assert _xml_text("uuid") in text  # the recorded query did ask for the uuid
    gpus = parse_nvidia_smi_csv(text)
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_bytes": H200_MEMORY_BYTES,
            "driver": "580.159.04",
            "cuda": None,
            "compute_capability": "9.0",
        }
    ]
    _assert_no_identifiers(gpus)


def test_parse_csv_noheader_nounits_as_capture_asks_for_it() -> None:
    # The shape of `--query-gpu=index,name,memory.total,driver_version,compute_cap
    # --format=csv,noheader,nounits`, with the H200's values, for two GPUs.
    text = "0, NVIDIA H200, 143771, 580.159.04, 9.0\n1, NVIDIA H200, 143771, 580.159.04, 9.0\n"
    gpus = parse_nvidia_smi_csv(text)
    assert [gpu["index"] for gpu in gpus] == [0, 1]
    assert all(gpu["memory_bytes"] == H200_MEMORY_BYTES for gpu in gpus)
    assert all(gpu["compute_capability"] == "9.0" for gpu in gpus)
    assert all(gpu["driver"] == "580.159.04" for gpu in gpus)


def test_parse_csv_not_available_values_become_none() -> None:
    gpus = parse_nvidia_smi_csv("0, NVIDIA H200, [N/A], 580.159.04, [N/A]\n")
    assert gpus[0]["memory_bytes"] is None
    assert gpus[0]["compute_capability"] is None


def test_parse_empty_csv() -> None:
    assert parse_nvidia_smi_csv("") == []


def test_all_gpu_sources_give_the_same_keys() -> None:
    xml_gpus = parse_nvidia_smi_xml(_fixture("nvidia-smi-q.xml"))
    csv_gpus = parse_nvidia_smi_csv(_host_csv_lines())
    assert set(xml_gpus[0]) == set(csv_gpus[0]) == GPU_KEYS


def test_cuda_version_from_plain_nvidia_smi() -> None:
    assert cuda_version_from_smi_header(_fixture("nvidia-smi.txt")) == "13.0"


def test_cuda_version_absent() -> None:
    assert cuda_version_from_smi_header("") is None
    assert cuda_version_from_smi_header(_fixture("host.txt")) is None


# ------------------------------------------------------------------------------------------- CPU


def _lscpu_value(key: str) -> str:
    for line in _fixture("host.txt").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    raise AssertionError(key)


def test_parse_lscpu_from_host_txt() -> None:
    parsed = parse_lscpu(_fixture("host.txt"))
    assert parsed["model"] == "Intel(R) Xeon(R) Processor"
    for flag in ("avx512f", "avx2", "fma", "amx_bf16", "avx512_fp16", "sse4_2"):
        assert flag in parsed["features"]
    assert parsed["features"] == sorted(parsed["features"])
    # Flags that do not bear on numerics are left out.
    assert "vme" not in parsed["features"]
    assert "hypervisor" not in parsed["features"]


def test_parse_cpuinfo_x86_built_from_the_real_flags() -> None:
    block = (
        "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
        f"model name\t: {_lscpu_value('Model name')}\n"
        f"flags\t\t: {_lscpu_value('Flags')}\n"
        "bugs\t\t: spectre_v1\n\n"
    )
    text = "".join(block.format(n=n) for n in range(4))
    parsed = parse_cpuinfo(text)
    assert parsed["model"] == "Intel(R) Xeon(R) Processor"
    assert {"avx512f", "avx2", "fma", "amx_tile", "amx_int8"} <= set(parsed["features"])
    assert parsed == parse_lscpu(_fixture("host.txt"))


def test_parse_cpuinfo_arm() -> None:
    text = (
        "processor\t: 0\nBogoMIPS\t: 2000.00\n"
        "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp "
        "sve sve2 bf16 i8mm\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd4f\nCPU revision\t: 0\n\n"
    )
    parsed = parse_cpuinfo(text)
    assert parsed["model"] == "ARM part 0xd4f"
    assert parsed["features"] == [
        "asimd",
        "asimddp",
        "asimdhp",
        "bf16",
        "fphp",
        "i8mm",
        "sve",
        "sve2",
    ]


def test_parse_cpuinfo_empty() -> None:
    assert parse_cpuinfo("") == {"model": None, "features": []}


# ------------------------------------------------------------------------------- this machine


def test_capture_hardware_on_this_machine() -> None:
    result = capture_hardware()
    assert {"os", "cpu", "memory_bytes", "gpus", "gpu_source"} <= set(result)
    assert result["gpu_source"] in ("nvml", "nvidia-smi", "none")
    assert isinstance(result["os"]["system"], str)
    cpu = result["cpu"]
    assert set(cpu) == {"model", "physical_cores", "logical_cores", "features"}
    assert isinstance(cpu["logical_cores"], int) and cpu["logical_cores"] >= 1
    assert isinstance(result["memory_bytes"], int) and result["memory_bytes"] > 0
    if isinstance(result["gpus"], list):
        for gpu in result["gpus"]:
            assert set(gpu) == GPU_KEYS
    if result["gpu_source"] == "none":
        assert result["gpus"] == []
    # Plain data only: safe_dump refuses anything else.
    assert yaml.safe_load(yaml.safe_dump(result)) == result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and /sys")
def test_capture_hardware_linux_agrees_with_psutil() -> None:
    import psutil

    result = capture_hardware()
    assert result["memory_bytes"] == psutil.virtual_memory().total
    assert result["cpu"]["physical_cores"] == psutil.cpu_count(logical=False)
    assert isinstance(result["cpu"]["model"], str)
    assert not result["cpu"]["model"].startswith("unavailable")
    assert isinstance(result["cpu"]["features"], list)


def test_capture_hardware_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys; from reprokit._capture.hardware import capture_hardware; "
        "capture_hardware(); "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
        "[m for m in ('torch', 'numpy') if m in sys.modules]"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_capture_hardware_without_numpy_or_torch_has_no_sections() -> None:
    code = (
        "import sys; from reprokit._capture.hardware import capture_hardware; "
        "r = capture_hardware(); assert 'torch' not in r and 'blas' not in r, sorted(r)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_capture_hardware_reports_blas_once_numpy_is_imported() -> None:
    pytest.importorskip("numpy")
    result = capture_hardware()
    assert result["blas_source"] in ("threadpoolctl", "numpy.show_config")
    assert isinstance(result["blas"], list) and result["blas"]
    for library in result["blas"]:
        assert set(library) == {"internal_api", "version", "num_threads", "filepath"}
    assert result["blas"][0]["internal_api"]
    yaml.safe_dump(result)


def test_a_broken_torch_module_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # Something named torch with none of torch's API: every field says why it is missing.
    monkeypatch.setitem(sys.modules, "torch", ModuleType("torch"))
    section = capture_hardware()["torch"]
    assert set(section) == {
        "version",
        "cuda",
        "cudnn",
        "cuda_available",
        "deterministic_algorithms",
        "cudnn_deterministic",
        "cudnn_benchmark",
        "tf32_matmul",
        "tf32_cudnn",
        "num_threads",
    }
    assert all(str(value).startswith("unavailable: ") for value in section.values())


@pytest.mark.torch
def test_capture_hardware_reports_torch_settings() -> None:
    torch = pytest.importorskip("torch")
    section = capture_hardware()["torch"]
    assert section["version"] == str(torch.__version__)
    assert section["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert section["num_threads"] == torch.get_num_threads()
    assert isinstance(section["cuda_available"], bool)


# ------------------------------------------------------------------ nvidia-smi as a subprocess


def _fake_smi(tmp_path: Path, script: str) -> str:
    # No NVIDIA driver here: a stand-in executable replays the real H200 output.
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell script")
def test_gpus_from_nvidia_smi_subprocess(tmp_path: Path) -> None:
    from reprokit._capture.hardware import _gpus_from_smi

    banner = FIXTURES / "nvidia-smi.txt"
    smi = _fake_smi(
        tmp_path,
        'case "$1" in\n'
        "  --query-gpu=index,name,memory.total,driver_version,compute_cap)\n"
        '    [ "$2" = "--format=csv,noheader,nounits" ] || exit 2\n'
        "    echo '0, NVIDIA H200, 143771, 580.159.04, 9.0' ;;\n"
        f"  '') cat '{banner}' ;;\n"
        "  *) exit 2 ;;\n"
        "esac\n",
    )
    assert _gpus_from_smi(smi) == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_bytes": H200_MEMORY_BYTES,
            "driver": "580.159.04",
            "cuda": "13.0",
            "compute_capability": "9.0",
        }
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell script")
def test_failing_nvidia_smi_is_reported_not_raised(tmp_path: Path) -> None:
    from reprokit._capture.hardware import _gpus_from_smi

    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    smi = _fake_smi(tmp_path, f'echo "{message}"\nexit 9\n')
    result = _gpus_from_smi(smi)
    assert isinstance(result, str)
    assert result.startswith("unavailable: ")
    assert "exited 9" in result and "NVIDIA-SMI has failed" in result
