import pytest

from bench.speed import MODES

MEDIANS: dict = {}
DEFAULT_LENGTHS = "64,128,256,512,1024,2048"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("speed suite")
    group.addoption("--speed-lengths", default=DEFAULT_LENGTHS, help=f"sequence lengths T to time (default {DEFAULT_LENGTHS})")
    group.addoption("--speed-device", default="cpu", help="device to time on: cpu (default), cuda, cuda:<index>")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seq_len" in metafunc.fixturenames:
        lengths = [int(t) for t in metafunc.config.getoption("--speed-lengths").split(",")]
        metafunc.parametrize("seq_len", lengths, ids=[f"T{t}" for t in lengths])
    if "mode" in metafunc.fixturenames:
        metafunc.parametrize("mode", MODES)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest):
    import torch

    return torch.device(request.config.getoption("--speed-device"))


@pytest.fixture
def medians() -> dict:
    """Median seconds of each benchmark run so far in this session, by key, for ratio checks."""
    return MEDIANS
