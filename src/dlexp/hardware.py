"""What this machine computes natively, as torch reports it: the CPU's class (AVX2, AVX512,
AVX512_BF16, AMX), whether bf16 is native or emulated, the GPU's bf16, the physical cores; and
the training precision that ``trainer.precision=auto`` resolves to."""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

AUTO = "auto"
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
    def fast_bf16(self) -> bool:
        """bf16 faster than float32 in training: with AMX's matrix tiles. AVX512_BF16 alone
        only has bf16 dot-product instructions: its convolutions and LSTMs train slower in bf16
        than in float32 (scripts/precision_bench.py measures it)."""
        return self.native_bf16 and self.amx

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
    """For records: the class, what it is made of, and any setting that held the CPU lower."""
    info = cpu_info()
    limits = {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}
    return {"cpu_class": info.cpu_class, "native_bf16": info.native_bf16, **asdict(info),
            **({"isa_limits": limits} if limits else {})}


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
    info = cpu_info()
    if info.fast_bf16:
        return "bf16-mixed", f"the CPU has AMX: bf16 matrix tiles ({info.cpu_class})"
    return "32-true", f"the CPU ({info.cpu_class}) {_slow_bf16_reason(info)}"


def _slow_bf16_reason(info: CpuInfo) -> str:
    if info.native_bf16:  # AVX512_BF16 without AMX
        return "has bf16 instructions but no AMX tiles: bf16 trains slower than float32"
    return "has no native bf16: bf16 would be emulated, slower than float32"


def slow_bf16_warning(precision: str, accelerator: str) -> str | None:
    """An explicit bf16 that this CPU trains slower than float32: one line, not an error."""
    info = cpu_info()
    if str(precision) not in BF16 or uses_gpu(accelerator) or info.fast_bf16:
        return None
    return (f"trainer.precision={precision}: this CPU ({info.cpu_class}) "
            f"{_slow_bf16_reason(info)}; trainer.precision=auto or 32-true is faster here")


def lstm_bf16_missing(precision: str, accelerator: str) -> bool:
    """oneDNN's LSTM has a bf16 primitive only where oneDNN has bf16: elsewhere the first step
    fails ('could not create a primitive descriptor for the LSTM forward propagation')."""
    return (str(precision) in BF16 and not uses_gpu(accelerator)
            and not cpu_info().onednn_bf16)


if __name__ == "__main__":  # python -m dlexp.hardware: this machine's class, and what auto picks
    precision, why = resolve_precision("auto")
    print(f"CPU class {cpu_info().cpu_class}, {physical_cores()} physical cores; "
          f"trainer.precision=auto: {precision} ({why})")
