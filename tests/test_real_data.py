"""On the real MNIST (when MNIST_DATA_DIR holds it): the case study's settings learn as it says."""

import pytest

from mnist_core.config import TrainConfig
from mnist_core.train import fit
from tests.conftest import real_data_dir


@pytest.mark.skipif(real_data_dir() is None, reason="MNIST_DATA_DIR does not hold the real MNIST")
def test_seed_model_with_case_study_settings_passes_85_percent_after_one_epoch():
    result = fit(TrainConfig(epochs=1), data_dir=real_data_dir())
    assert result.outcome.test_accuracy >= 85, result.outcome
