import pytest
import torch

from conceptlang.models.training import TrainConfig, Trainer

TINY_NET = {"widths": [8, 16], "emb_dim": 16, "groups": 4, "attention": False}


def tiny_config(**kw) -> TrainConfig:
    base = dict(name="tiny", domain="scenes", iters=4, batch_size=8, chunk_size=32, checkpoint_every=2,
                log_every=2, warmup=2, net=dict(TINY_NET))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A models folder with one tiny trained scenes model (2 iterations), exported like the shipped ones."""
    from conceptlang.models.export import export_run

    root = tmp_path_factory.mktemp("tiny_models")
    tr = Trainer(tiny_config(iters=2), root / "run")
    tr.train(progress=False)
    export_run(root / "run", root / "models", sampler={"sampler": "annealed", "step_size": 1e-5, "n_sigmas": 4})
    return root / "models"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these nets are tiny, and on a busy 2-core machine a second thread only spins."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
