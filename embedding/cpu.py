"""The machine facts that decide which embedding backend is fast and exact enough here.

What goes in: ``/proc/cpuinfo`` (else ``lscpu``) and the installed distributions. What comes
out: a :class:`CpuIdentity` (the CPU's model name and the instruction sets that change int8
numerics and speed) and :func:`library_versions` (the runtimes whose kernels do the work).

Why these flags: without an int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX), x86
int8 kernels multiply with ``vpmaddubsw``, whose 16-bit sums saturate (ONNX Runtime documents
this for U8S8 on AVX2): on an AMD EPYC with AVX2 only, OpenVINO int8 reached cosine 0.9897 to
fp32 (under the 0.99 bar) at 1.03x torch's speed. With VNNI the same model reached 0.9967 at
1.65x. Guarantees: reading never raises; an unreadable CPU is ``unknown`` with no flags.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The CPU flags that matter to int8 and fp32 kernels (as ``/proc/cpuinfo`` names them).
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
#: Flags of an int8 dot-product instruction (no saturating 16-bit intermediate sums).
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
#: The distributions whose versions key a measurement (a new version may change a kernel).
RUNTIMES = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class CpuIdentity:
    """A CPU as far as embedding speed and int8 numerics go: model name and relevant flags."""

    model: str
    flags: tuple[str, ...]

    @property
    def has_int8_dot(self) -> bool:
        """True when the CPU has VNNI or AMX (see the module docstring)."""
        return bool(INT8_DOT_FLAGS & set(self.flags))

    def describe(self) -> str:
        """``<model> (avx2, avx512_vnni)`` for log lines."""
        return f"{self.model} ({', '.join(self.flags) or 'none of ' + '/'.join(RELEVANT_FLAGS)})"


def parse_cpuinfo(text: str) -> CpuIdentity:
    """The identity in ``/proc/cpuinfo`` text (``model name`` and ``flags`` of the first CPU),
    or in ``lscpu`` output (``Model name:`` and ``Flags:``)."""
    model, flags = "unknown", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model == "unknown":
            model = value.strip() or "unknown"
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuIdentity(model, tuple(f for f in RELEVANT_FLAGS if f in flags))


def cpu_identity() -> CpuIdentity:
    """This machine's :class:`CpuIdentity` (``/proc/cpuinfo``, else ``lscpu``)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        pass
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        return CpuIdentity("unknown", ())
    try:
        out = subprocess.run([lscpu], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return CpuIdentity("unknown", ())
    return parse_cpuinfo(out.stdout)


def library_versions() -> dict[str, str]:
    """Installed version of each of :data:`RUNTIMES` (``absent`` when not installed)."""
    versions: dict[str, str] = {}
    for name in RUNTIMES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
