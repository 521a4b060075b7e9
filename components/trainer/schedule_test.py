"""The learning-rate schedule (TrainConfig.lr_schedule) and steps per epoch."""
import numpy as np
import pytest

from components.config import TrainConfig
from components.trainer import data
from components.trainer.training import learning_rate


def test_steps_per_epoch_counts_the_last_partial_batch():
  assert data.steps_per_epoch(64, 32) == 2
  assert data.steps_per_epoch(65, 32) == 3
  assert data.steps_per_epoch(1, 32) == 1


def test_constant_is_the_plain_rate():
  assert learning_rate(TrainConfig(learning_rate=0.002), None) == 0.002


def test_cosine_decays_from_the_rate_to_zero_over_all_epochs():
  train = TrainConfig(learning_rate=0.001, epochs=4, lr_schedule='cosine')
  schedule = learning_rate(train, steps_per_epoch=10)
  at = lambda step: float(schedule(step))
  assert at(0) == pytest.approx(0.001)
  assert at(20) == pytest.approx(0.0005, rel=1e-5)          # half way: cos(pi/2)
  assert at(10) == pytest.approx(0.0005 * (1 + np.cos(np.pi / 4)), rel=1e-5)
  assert at(40) == pytest.approx(0.0, abs=1e-9)
  values = [at(s) for s in range(41)]
  assert all(a >= b for a, b in zip(values, values[1:]))   # never rises


def test_cosine_without_the_steps_is_an_error():
  train = TrainConfig(lr_schedule='cosine')
  with pytest.raises(ValueError, match='steps per epoch'):
    learning_rate(train, None)
