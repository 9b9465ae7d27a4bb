import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def shared():
    """The ../shared folder, or skip the test when it is absent."""
    from liser.testing import shared_dir

    path = shared_dir()
    if path is None:
        pytest.skip("../shared (real RAVDESS, FER models) is not present; set LISER_SHARED")
    return path
