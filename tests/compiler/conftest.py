import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Thousands of 2-D chains are tiny tensors: one thread is fastest and immune to the other jobs
    competing for the machine's cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
