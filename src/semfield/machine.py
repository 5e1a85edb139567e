"""Facts about the machine a run or benchmark ran on, and this process's peak memory."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_mb() -> float | None:
    """Physical memory in MiB (/proc/meminfo), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores (and those usable), RAM, torch and Python versions, torch threads, the device asked
    for, and the GPU's name when CUDA is available (else None)."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "ram_mb": mem_total_mb(), "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device": device, "gpu": None,
    }
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else 0)
    return info
