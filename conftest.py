"""Fixtures shared by every test folder: the project's one fake-MNIST generator
(components/mnist_example_gen/testing.py) as data arrays and as an IDX directory."""
import pytest

from components.mnist_example_gen import testing
# A small real prepared tfds data dir (two versions), and a damageable copy of it.
from components.mnist_example_gen.tfds_testing import copy_tfds_dir, tfds_mnist  # pylint: disable=unused-import


@pytest.fixture
def fake_digits():
  """fake_digits(n, seed=0) -> (uint8 [n, 28, 28], uint8 [n]): learnable digits."""
  return testing.fake_digits


@pytest.fixture
def fake_mnist_dir(tmp_path):
  """A directory with the four IDX files (200 train, 100 eval, gzip)."""
  return testing.write_fake_mnist(str(tmp_path / 'mnist'))
