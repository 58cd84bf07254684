"""The ``XVAL_*`` settings: defaults, valid values, and errors that name the valid ones."""

import pytest

from xval import config
from xval.errors import ConfigError


def test_defaults():
    assert config.backends({}) == ["manual", "torch", "jax"]
    assert config.device({}) == "auto"
    assert config.dtype({}) == "float64"
    assert config.max_bytes({}) is None
    assert config.threads({}) == config.cpus() >= 1


def test_valid_values():
    assert config.backends({"XVAL_BACKEND": " jax, manual ,jax"}) == ["jax", "manual"]
    assert config.backends({"XVAL_BACKEND": "manual,mypkg.engine,path/to/engine.py"}) == [
        "manual",
        "mypkg.engine",
        "path/to/engine.py",
    ]
    assert config.device({"XVAL_DEVICE": "CUDA"}) == "cuda"
    assert config.dtype({"XVAL_DTYPE": "float32"}) == "float32"
    assert config.max_bytes({"XVAL_MAX_BYTES": "2e9"}) == 2_000_000_000
    assert config.threads({"XVAL_THREADS": " 3 "}) == 3


@pytest.mark.parametrize(
    "name, value, function, message",
    [
        (
            "XVAL_BACKEND",
            " , ",
            config.backends,
            "XVAL_BACKEND=',' names no engine; give a comma list of engines: built-in names (manual, torch, jax)",
        ),
        ("XVAL_DEVICE", "tpu", config.device, "XVAL_DEVICE='tpu' is not valid; use one of: auto, cpu, cuda"),
        ("XVAL_DTYPE", "float16", config.dtype, "XVAL_DTYPE='float16' is not valid; use one of: float64, float32"),
        (
            "XVAL_THREADS",
            "0",
            config.threads,
            "XVAL_THREADS='0' is not valid; give a whole number of threads from 1 to 4096",
        ),
        (
            "XVAL_THREADS",
            "two",
            config.threads,
            "XVAL_THREADS='two' is not valid; give a whole number of threads from 1",
        ),
        (
            "XVAL_THREADS",
            "1_0",
            config.threads,
            "XVAL_THREADS='1_0' is not valid; give a whole number of threads from 1",
        ),
        ("XVAL_THREADS", "+2", config.threads, "XVAL_THREADS='+2' is not valid; give a whole number of threads from 1"),
        (
            "XVAL_THREADS",
            "\u0663",
            config.threads,
            "is not valid; give a whole number of threads from 1 to 4096, in plain digits",
        ),
        ("XVAL_THREADS", "9" * 400, config.threads, "is not valid; give a whole number of threads from 1 to 4096"),
        (
            "XVAL_THREADS",
            "1000000",
            config.threads,
            "XVAL_THREADS='1000000' is not valid; give a whole number of threads from 1 to 4096",
        ),
        (
            "XVAL_MAX_BYTES",
            "lots",
            config.max_bytes,
            "XVAL_MAX_BYTES='lots' is not valid; give a positive number of bytes",
        ),
        ("XVAL_MAX_BYTES", "-5", config.max_bytes, "XVAL_MAX_BYTES='-5' is not valid"),
    ],
)
def test_bad_values_name_the_valid_ones(name, value, function, message):
    with pytest.raises(ConfigError) as info:
        function({name: value})
    assert message in str(info.value)
