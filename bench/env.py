"""``gdbench env``: devices, library versions, a measured matmul peak, and the device peak that
``% of peak`` in results is relative to.

``device_peak()`` is the float32 peak FLOP/s of the device a run uses: on CPU (and on an
accelerator missing from ``PUBLISHED_PEAKS``) a measured matmul peak, taken once per process,
or once per compilation cache directory when ``gdbench run`` uses one (``PEAK_FILE`` there,
keyed by the device, the host CPU and the JAX version, so that a warm process does not spend
a fraction of a second measuring it again, and runs sharing the cache divide by the same
peak); on a known GPU or TPU the manufacturer's published figure.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from gdbench.results import provenance

#: Size and repeats of the measured matmul peak (``matmul_peak_flops``). 1024 reaches the same
#: float32 rate as 2048 on a CPU (both are far beyond its caches) for an eighth of the work:
#: about 0.1 s instead of 1 to 2.5 s on a 2-core CPU, which a cold ``gdbench run`` paid.
MATMUL_N = 1024
MATMUL_REPEATS = 5
#: File in the compilation cache directory holding measured peaks (``device_peak``).
PEAK_FILE = "device_peak.json"

_NVIDIA_H100 = (
    "NVIDIA H100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h100/"
)
_NVIDIA_H200 = (
    "NVIDIA H200 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h200/"
)
_NVIDIA_A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/a100/"
)
_NVIDIA_L4 = "NVIDIA L4 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/l4/"
_NVIDIA_V100 = (
    "NVIDIA V100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/v100/"
)
_TPU_V4 = "Google Cloud TPU v4 documentation, https://cloud.google.com/tpu/docs/v4"
_TPU_V5E = "Google Cloud TPU v5e documentation, https://cloud.google.com/tpu/docs/v5e"
_GPU_BASIS = (
    "published float32 (CUDA-core, dense) peak; float32 matmuls that XLA runs on tensor "
    "cores as TF32 can exceed it"
)
_TPU_BASIS = (
    "published bfloat16 peak (TPUs publish no float32 figure; JAX's default float32 matmul "
    "precision on TPU runs bfloat16 passes on the MXU)"
)

#: Published peaks per chip, FLOP/s: (regular expression matched against the lower-cased
#: ``jax.Device.device_kind``, name, FLOP/s, basis, source). The first match wins, so the
#: specific variants (PCIe, NVL) come before the general name. device_kind strings as CUDA and
#: libtpu report them, e.g. "NVIDIA H100 80GB HBM3" (SXM5), "NVIDIA H100 PCIe", "NVIDIA H100
#: NVL", "NVIDIA H200", "NVIDIA A100-SXM4-40GB", "NVIDIA L4", "Tesla V100-SXM2-16GB",
#: "TPU v4", "TPU v5 lite" (= v5e).
PUBLISHED_PEAKS: tuple[tuple[str, str, float, str, str], ...] = (
    # H100: FP32 67 TFLOPS (SXM5), 51 TFLOPS (PCIe), 60 TFLOPS (NVL).
    (r"\bh100\b.*\bpcie\b", "NVIDIA H100 PCIe", 51e12, _GPU_BASIS, _NVIDIA_H100),
    (r"\bh100\b.*\bnvl\b", "NVIDIA H100 NVL", 60e12, _GPU_BASIS, _NVIDIA_H100),
    (r"\bh100\b", "NVIDIA H100 SXM", 67e12, _GPU_BASIS, _NVIDIA_H100),
    # H200: FP32 67 TFLOPS (SXM), 60 TFLOPS (NVL).
    (r"\bh200\b.*\bnvl\b", "NVIDIA H200 NVL", 60e12, _GPU_BASIS, _NVIDIA_H200),
    (r"\bh200\b", "NVIDIA H200 SXM", 67e12, _GPU_BASIS, _NVIDIA_H200),
    # A100 (SXM4 and PCIe, 40 and 80 GB): FP32 19.5 TFLOPS.
    (r"\ba100\b", "NVIDIA A100", 19.5e12, _GPU_BASIS, _NVIDIA_A100),
    # L4: FP32 30.3 TFLOPS. (\b keeps "L40S" out.)
    (r"\bl4\b", "NVIDIA L4", 30.3e12, _GPU_BASIS, _NVIDIA_L4),
    # V100: FP32 15.7 TFLOPS (SXM2), 14 TFLOPS (PCIe), 16.4 TFLOPS (V100S PCIe).
    (r"\bv100s\b", "NVIDIA V100S PCIe", 16.4e12, _GPU_BASIS, _NVIDIA_V100),
    (r"\bv100\b.*\bpcie\b", "NVIDIA V100 PCIe", 14e12, _GPU_BASIS, _NVIDIA_V100),
    (r"\bv100\b", "NVIDIA V100 SXM2", 15.7e12, _GPU_BASIS, _NVIDIA_V100),
    # TPU v4: 275 TFLOPS bf16 per chip. ("TPU v4 lite", v4i, is another chip.)
    (r"^tpu v4$", "TPU v4", 275e12, _TPU_BASIS, _TPU_V4),
    # TPU v5e: 197 TFLOPS bf16 per chip; JAX calls it "TPU v5 lite".
    (r"^tpu v5(e| lite)$", "TPU v5e", 197e12, _TPU_BASIS, _TPU_V5E),
)


@dataclasses.dataclass(frozen=True)
class DevicePeak:
    """A device's peak FLOP/s and where the number comes from.

    ``flops``: FLOP/s per device; ``kind``: "measured" or "published"; ``basis``: what the
    number is (e.g. the matmul size); ``source``: citation of a published figure, else "".
    """

    device_kind: str
    flops: float
    kind: str
    basis: str
    source: str = ""

    def to_json(self) -> dict:
        """The peak as a JSON-ready dict (stored in a run's manifest)."""
        return dataclasses.asdict(self)


def matmul_peak_flops(n: int = MATMUL_N, repeats: int = MATMUL_REPEATS) -> float:
    """Best-of-``repeats`` float32 FLOP/s (2 n^3 / seconds) of an ``n x n`` matmul on the
    default device, after one untimed warm-up run. The operand is drawn with NumPy (a JAX
    draw would compile three more programs, about 0.3 s of a cold process)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def published_peak(device_kind: str) -> DevicePeak | None:
    """The published peak FLOP/s of a GPU/TPU by its ``device_kind``, or None if not listed."""
    kind = device_kind.strip().lower()
    for pattern, name, flops, basis, source in PUBLISHED_PEAKS:
        if re.search(pattern, kind):
            return DevicePeak(device_kind, flops, "published", f"{name}: {basis}", source)
    return None


def device_peak(device: jax.Device | None = None) -> DevicePeak:
    """Peak FLOP/s of ``device`` (default: the first device): the published figure for a
    GPU/TPU in ``PUBLISHED_PEAKS``, else the measured matmul peak (measured once per process
    and device kind, a few seconds on a CPU)."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        known = published_peak(device.device_kind)
        if known is not None:
            return known
    return _measured_peak(device.platform, device.device_kind)


@functools.cache
def _measured_peak(platform: str, device_kind: str) -> DevicePeak:
    from gdbench import compile_cache

    directory = compile_cache.directory()
    key = _peak_key(platform, device_kind)
    if directory is not None:
        stored = _read_peaks(directory / PEAK_FILE).get(key)
        try:
            return DevicePeak(**stored)
        except TypeError:  # none stored, or not a peak: measured again
            pass
    flops = matmul_peak_flops()
    basis = (
        f"measured: float32 {MATMUL_N}x{MATMUL_N} matmul, best of {MATMUL_REPEATS}, "
        f"on {platform} ({device_kind}), {provenance.utc_now()}"
    )
    peak = DevicePeak(device_kind, flops, "measured", basis)
    if directory is not None:
        _write_peak(directory / PEAK_FILE, key, peak)
    return peak


def _peak_key(platform: str, device_kind: str) -> str:
    """What a measured peak depends on: device, host CPU, JAX and XLA versions, matmul size."""
    from gdbench import compile_cache

    content = [platform, device_kind, compile_cache.host_cpu(), jax.__version__, MATMUL_N]
    content.append(jax.devices()[0].client.platform_version)
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:24]


def _read_peaks(path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _write_peak(path, key: str, peak: DevicePeak) -> None:
    """Add ``peak`` under ``key`` to the peaks file (atomically; a failure leaves it as it was:
    the peak is then measured again by the next process)."""
    from gdbench.results import store

    text = json.dumps({**_read_peaks(path), key: peak.to_json()}, indent=1).encode()
    try:
        store.atomic_write(path, lambda f: f.write(text), durable=False)
    except OSError:
        pass


def describe() -> str:
    """The text ``gdbench env`` prints: versions, devices, the measured matmul peak and the
    peak that results' ``peak_fraction`` is relative to."""
    info = provenance.collect()
    lines = [f"gdbench {info.get('gdbench_version')}"]
    if info.get("git_commit"):
        dirty = " (dirty)" if info.get("git_dirty") else ""
        lines.append(f"git commit: {info['git_commit']}{dirty}")
    lines.append(f"python: {info.get('python')}")
    for name, version in sorted(info.get("versions", {}).items()):
        lines.append(f"{name}: {version}")
    lines.append(f"jax backend: {jax.default_backend()}")
    for d in jax.devices():
        lines.append(f"device {d.id}: {d.platform} {d.device_kind}")
    peak = matmul_peak_flops()
    lines.append(
        f"measured float32 matmul peak ({MATMUL_N}^3, best of {MATMUL_REPEATS}): "
        f"{peak / 1e9:.1f} GFLOP/s"
    )
    device = jax.devices()[0]
    known = published_peak(device.device_kind) if device.platform != "cpu" else None
    if known is None:
        lines.append("peak used for % of peak in results: the measured matmul peak above")
    else:
        lines.append(
            f"peak used for % of peak in results: {known.flops / 1e9:.0f} GFLOP/s, "
            f"{known.basis} ({known.source})"
        )
    return "\n".join(lines)
