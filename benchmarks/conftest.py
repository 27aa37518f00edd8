import pytest

MEDIANS: dict[str, float] = {}


@pytest.fixture
def medians() -> dict[str, float]:
    """Median seconds of each benchmark run so far in this session, by name, for ratio checks."""
    return MEDIANS
