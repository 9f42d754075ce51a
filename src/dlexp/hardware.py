"""What this machine computes natively, as torch reports it: the CPU's class (AVX2, AVX512,
AVX512_BF16, AMX), whether bf16 is native or emulated, the GPU's bf16, the physical cores; and
the training precision that ``trainer.precision=auto`` resolves to."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

AUTO = "auto"
BF16_FASTER = 0.9  # bf16 is picked below this ratio of step times: a gain worth its rounding
BF16 = ("bf16-mixed", "bf16-true", "bf16")
# the settings that hold oneDNN and ATen below what the CPU has (tests, and users, may set them)
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
# a bigger CPU held to AVX2: the class of most laptops, for tests and records (set before torch)
AVX2_LIMITS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


@dataclass(frozen=True)
class CpuInfo:
    capability: str    # ATen's kernels: DEFAULT, AVX2, AVX512 (ATEN_CPU_CAPABILITY lowers it)
    avx512_bf16: bool  # the hardware's instructions
    amx: bool
    onednn_bf16: bool  # oneDNN's bf16 primitives (ONEDNN_MAX_CPU_ISA lowers them)

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix products in hardware, in both of torch's CPU backends; elsewhere bf16 is
        converted to and from float32 around every op, which is slower than float32 itself."""
        return (self.capability == "AVX512" and self.onednn_bf16
                and (self.avx512_bf16 or self.amx))

    @property
    def cpu_class(self) -> str:
        """The class a record's CPU timings belong to."""
        if self.native_bf16:
            return "AMX" if self.amx else "AVX512_BF16"
        return self.capability


@functools.cache
def cpu_info() -> CpuInfo:
    return CpuInfo(capability=torch.backends.cpu.get_cpu_capability(),
                   avx512_bf16=torch.cpu._is_avx512_bf16_supported(),
                   amx=torch.cpu._is_amx_tile_supported(),
                   onednn_bf16=torch.ops.mkldnn._is_mkldnn_bf16_supported())


def describe() -> dict[str, object]:
    """For records: the class, what it is made of, any setting that held the CPU lower, and
    where it was measured, how bf16 steps compare with float32 ones."""
    info = cpu_info()
    limits = {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}
    measured = {"bf16_step_ratio": bf16_step_ratio()} if measures_bf16(info) else {}
    return {"cpu_class": info.cpu_class, "native_bf16": info.native_bf16, **asdict(info),
            **({"isa_limits": limits} if limits else {}), **measured}


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measures_bf16(info: CpuInfo) -> bool:
    """AVX512_BF16 without AMX: bf16 dot products, but no matrix tiles. Whether a training step
    is faster in bf16 there depends on the chip, so it is measured, not assumed."""
    return info.native_bf16 and not info.amx


def bf16_step_ratio() -> float | None:
    """bf16 autocast's time per training step over float32's on this CPU (dlexp.bf16_probe),
    measured once per CPU and kept in the user's cache; None if the probe failed."""
    from dlexp import bf16_probe  # only the CPUs that need it pay for the probe

    machine = f"{cpu_name()}|{cpu_info()}|{os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
    return bf16_probe.step_ratio(machine, physical_cores())


def bf16_speed() -> tuple[bool, str]:
    """Whether bf16 autocast trains faster than float32 on this CPU, and why, in words."""
    info = cpu_info()
    if not info.native_bf16:
        return False, "has no native bf16: bf16 would be emulated, slower than float32"
    if info.amx:
        return True, "has AMX: bf16 matrix tiles"
    ratio = bf16_step_ratio()
    if ratio is None:
        return False, "has bf16 instructions without AMX, and the bf16 probe failed: float32"
    if ratio < BF16_FASTER:
        return True, (f"has bf16 instructions without AMX, measured faster than float32 here "
                      f"(a bf16 step takes {ratio:.2f}x the time)")
    return False, (f"has bf16 instructions without AMX, measured no faster than float32 here "
                   f"(a bf16 step takes {ratio:.2f}x the time)")


def physical_cores(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Cores this process may run on, SMT siblings counted once: matrix kernels keep a core's
    vector units busy, so a second thread on its sibling only adds contention."""
    allowed = sorted(os.sched_getaffinity(0))
    cores = set()
    for cpu in allowed:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))
        except OSError:  # no topology (some containers): count the CPU as a core
            cores.add(("cpu", str(cpu)))
    return max(len(cores), 1)


def uses_gpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(accelerator: str) -> tuple[str, str]:
    """``auto``: the fastest precision native on the device at hand, and why, in words."""
    if uses_gpu(accelerator):
        if not torch.cuda.is_available():  # trainer=gpu without one: the trainer says so
            return "32-true", "no CUDA device"
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", f"{name} computes bf16 natively"
        return "16-mixed", f"{name} has no native bf16; float16 with a loss scaler"
    fast, why = bf16_speed()
    return ("bf16-mixed" if fast else "32-true"), f"the CPU ({cpu_info().cpu_class}) {why}"


def slow_bf16_warning(precision: str, accelerator: str) -> str | None:
    """An explicit bf16 that this CPU trains slower than float32: one line, not an error."""
    if str(precision) not in BF16 or uses_gpu(accelerator):
        return None
    fast, why = bf16_speed()
    if fast:
        return None
    return (f"trainer.precision={precision}: this CPU ({cpu_info().cpu_class}) {why}; "
            "trainer.precision=auto or 32-true is faster here")


def lstm_bf16_missing(precision: str, accelerator: str) -> bool:
    """oneDNN's LSTM has a bf16 primitive only where oneDNN has bf16: elsewhere the first step
    fails ('could not create a primitive descriptor for the LSTM forward propagation')."""
    return (str(precision) in BF16 and not uses_gpu(accelerator)
            and not cpu_info().onednn_bf16)


if __name__ == "__main__":  # python -m dlexp.hardware: this machine's class, and what auto picks
    precision, why = resolve_precision("auto")
    print(f"CPU class {cpu_info().cpu_class}, {physical_cores()} physical cores; "
          f"trainer.precision=auto: {precision} ({why})")
