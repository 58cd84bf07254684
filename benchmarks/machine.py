"""Where a run happens: the device it measures on, and the machine facts recorded beside every result."""

import importlib
import os
import platform

from xval import config
from xval.errors import ConfigError


class NoGPUError(ConfigError):
    """``--device cuda`` (or ``XVAL_DEVICE=cuda``) on a machine where neither torch nor jax finds a GPU."""


def gpu_names():
    """Names of the CUDA GPUs torch or jax can see, ``[]`` when there is none (or neither is installed)."""
    names = []
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    if not names:
        try:
            import jax

            names = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        except (ImportError, RuntimeError):
            pass
    return names


def resolve_device(requested=None, env=None):
    """``(device, note)``: ``cpu`` or ``cuda`` for the ``--device`` flag, else ``XVAL_DEVICE``.

    ``auto`` means the GPU when one is found, else the CPU (the note says no GPU was found). ``cuda`` with no
    GPU raises ``NoGPUError``, which says so.
    """
    choice = config.device({"XVAL_DEVICE": requested} if requested else env)
    gpus = gpu_names() if choice != "cpu" else []
    if choice == "cuda" and not gpus:
        raise NoGPUError(
            "no GPU found: --device cuda / XVAL_DEVICE=cuda was requested, but neither torch nor jax sees a CUDA GPU "
            "on this machine; run with --device cpu (or XVAL_DEVICE=cpu), or on a machine with a GPU and CUDA builds "
            "of torch/jax"
        )
    if choice == "auto":
        if gpus:
            return "cuda", f"GPU found: {gpus[0]}"
        return "cpu", "no GPU found (XVAL_DEVICE=auto): measuring on the CPU"
    return choice, f"GPU: {gpus[0]}" if gpus else "CPU"


def engine_device(engine, device):
    """The device label of an engine's measurements: the run's device, and for ``manual`` the device and array
    library it computes with (``manual.arrays``: ``XVAL_ARRAY``, and on ``XVAL_DEVICE=cuda`` cupy or torch), e.g.
    ``cpu (numpy)`` or ``cuda:0 (cupy)``."""
    if engine != "manual":
        return device
    from manual import arrays

    try:
        lib = arrays.library()
    except ConfigError as error:
        return f"unavailable ({error})"
    return f"{lib.device_name} ({lib.name})"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """threadpoolctl's view of the loaded BLAS/OpenMP pools: library, kernel (architecture) and threads."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    return [{key: pool.get(key) for key in keep if key in pool} for pool in threadpool_info()]


def library_versions():
    versions = {"python": platform.python_version()}
    for name in ("numpy", "torch", "jax", "jaxlib", "backpack", "curvlinops", "threadpoolctl", "matplotlib"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        version = getattr(module, "__version__", None)
        if version is None:
            from importlib import metadata

            dist = {"backpack": "backpack-for-pytorch", "curvlinops": "curvlinops-for-pytorch"}.get(name, name)
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = "unknown"
        versions[name] = version
    return versions


def machine_info(device, threads):
    """Facts recorded with every run: CPU, cores, BLAS threads and kernel, GPU, library versions, env."""
    import psutil

    return {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "load_average_1_5_15_at_start": list(os.getloadavg()),
        "device": device,
        "gpu_names": gpu_names(),
        "blas_threads_pinned": threads,
        "blas_pools": blas_info(),
        "openblas_env": {
            k: os.environ[k]
            for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
            if k in os.environ
        },
        "libraries": library_versions(),
    }
