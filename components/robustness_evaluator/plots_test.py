"""Both figures render to real PNGs of the expected size."""
import io

import matplotlib.image
import numpy as np
import pytest

from components.robustness_evaluator import plots


def _decode(png: bytes) -> np.ndarray:
  assert png.startswith(b'\x89PNG\r\n\x1a\n')
  return matplotlib.image.imread(io.BytesIO(png), format='png')


def test_robustness_curve():
  curves = {'candidate': {'fgsm': {0.1: 0.9, 0.3: 0.7}, 'pgd': {0.1: 0.8, 0.3: 0.4}},
            'base': {'fgsm': {0.1: 0.5, 0.3: 0.1}}}
  image = _decode(plots.robustness_curve(curves, {'candidate': 0.99, 'base': 0.99},
                                         title='t'))
  assert image.shape[:2] == (450, 700)
  assert image[..., :3].std() > 0.05   # not a blank canvas


def test_perturbed_examples_grid():
  rng = np.random.default_rng(0)
  images = rng.random((6, 784)).astype(np.float32)
  image = _decode(plots.perturbed_examples(
      images, [1, 2, 3, 4, 5, 6], {'base': [1] * 6, 'adversarial': [2] * 6},
      title='fgsm', columns=4))
  assert image.shape[1] == 4 * 220
  assert image.shape[0] == round(100 * ((2.1 + 0.17 * 3) * 2 + 0.5))
  with pytest.raises(ValueError, match='no images'):
    plots.perturbed_examples(images[:0], [], {})
  with pytest.raises(ValueError, match='square'):
    plots.perturbed_examples(images[:, :780], [1] * 6, {})
