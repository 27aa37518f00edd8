import pytest

from bench.speed import MODES, REFERENCE

MEDIANS: dict = {}
DEFAULT_LENGTHS = "64,128,256,512,1024,2048"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("speed suite")
    group.addoption("--speed-lengths", default=DEFAULT_LENGTHS, help=f"sequence lengths T to time (default {DEFAULT_LENGTHS})")
    group.addoption("--speed-device", default="cpu", help="device to time on: cpu (default), cuda, cuda:<index>")
    group.addoption("--speed-ratio-length", type=int, default=None, help="T at which to check the README's time ratios (2048 as stated; unset: not checked)")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: no error where it is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """The speed suite runs in one process: -n auto (the project's addopts, for the tests) means none
    here, since a second worker would time against the first."""
    return 0


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("numprocesses", None):
        raise pytest.UsageError("the speed suite times one process on a quiet machine: run it without -n (or with -n 0)")


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


@pytest.fixture(scope="session")
def ratio_length(request: pytest.FixtureRequest) -> int:
    length = request.config.getoption("--speed-ratio-length")
    if length is None:
        pytest.skip("time ratios are checked only with --speed-ratio-length=<T> (2048 as the README states them)")
    return length


@pytest.fixture
def medians() -> dict:
    """Median seconds of each benchmark run so far in this session, by key, for ratio checks."""
    return MEDIANS


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Every variant's forward + backward time over raw SDPA's at each T timed in this session."""
    timed = [key for key in MEDIANS if isinstance(key, tuple) and len(key) == 3 and key[1] == "forward_backward"]
    lengths = sorted({seq_len for variant, _, seq_len in timed if variant == REFERENCE})
    variants = sorted({variant for variant, _, _ in timed if variant != REFERENCE})
    if not lengths or not variants:
        return
    terminalreporter.section("forward + backward time / raw SDPA")
    terminalreporter.write_line("variant".ljust(22) + "".join(f"T={t}".rjust(10) for t in lengths))
    for variant in variants:
        ratios = (MEDIANS.get((variant, "forward_backward", t), float("nan")) / MEDIANS[(REFERENCE, "forward_backward", t)] for t in lengths)
        terminalreporter.write_line(variant.ljust(22) + "".join(f"{ratio:10.2f}" for ratio in ratios))
