import os

import pytest
from hypothesis import HealthCheck, settings

# Fast by default; thorough under CI=true (CI runs on 2 cores, so "thorough" stays bounded).
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Point the user-models environment variable at nothing, so tests see only what they set."""
    monkeypatch.delenv("CONCEPTLANG_MODELS", raising=False)


@pytest.fixture
def one_torch_thread():
    """Thousands of 2-D chains are tiny tensors: one thread is fastest and immune to the other jobs
    competing for the machine's cores."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
