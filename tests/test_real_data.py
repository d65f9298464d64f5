"""On the real MNIST (when MNIST_DATA_DIR holds it): the case study's settings learn as it says,
and the divergence rules never fire on a preset."""

import pytest

from mnist_core.config import PRESETS, TrainConfig
from mnist_core.events import Finished, Progress
from mnist_core.train import LOSS_BLOWUP, fit
from tests.conftest import real_data_dir


@pytest.mark.skipif(real_data_dir() is None, reason="MNIST_DATA_DIR does not hold the real MNIST")
def test_seed_model_with_case_study_settings_passes_85_percent_after_one_epoch():
    events = []
    result = fit(TrainConfig(epochs=1), on_event=events.append, data_dir=real_data_dir())
    assert result.outcome.test_accuracy >= 85, result.outcome
    # Its early loss spike is the highest of any preset's: far below the divergence threshold.
    assert max(e.loss for e in events if isinstance(e, Progress)) < LOSS_BLOWUP / 20


@pytest.mark.skipif(real_data_dir() is None, reason="MNIST_DATA_DIR does not hold the real MNIST")
@pytest.mark.parametrize("preset", ["fast", "best"])  # case-study: the test above
def test_no_preset_trips_the_divergence_rules(preset):
    """The first epoch is where a loss spikes; the best preset's (slow) epoch runs on 5,000 images here."""
    config = PRESETS[preset].config.replace(epochs=1)
    if preset == "best":
        config = config.replace(train_subset=5_000)
    events = []
    result = fit(config, on_event=events.append, data_dir=real_data_dir())
    assert isinstance(result.outcome, Finished), result.outcome
    highest = max(e.loss for e in events if isinstance(e, Progress))
    assert highest < LOSS_BLOWUP / 20  # far from the blow-up threshold, not just under it
    assert result.outcome.test_accuracy > 90
