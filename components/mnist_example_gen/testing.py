"""Small generated MNIST-format data for tests: learnable, deterministic, tiny.

Each class is a bright 6x6 square at its own position on a noisy background, so a
CNN learns it in one short epoch while the files stay a few kilobytes.
"""
import os
from typing import Optional, Tuple

import numpy as np

from components.mnist_example_gen import idx


def fake_digits(n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 10).astype(np.uint8)
  rng.shuffle(labels)
  images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
  for i, label in enumerate(labels):
    r, c = 1 + 7 * (label // 3), 1 + 9 * (label % 3)
    images[i, r:r + 6, c:c + 6] = rng.integers(200, 256, size=(6, 6), dtype=np.uint8)
  return images, labels


def write_fake_mnist(data_dir: str, n_train: int = 200, n_eval: int = 100,
                     seed: int = 0, compress: bool = True,
                     span: Optional[int] = None, ambiguous_eval: int = 0) -> str:
  """Writes the four IDX files (into data_dir/span-<span> if span is given).

  ambiguous_eval replaces the last eval images by one identical digit-free image
  (background noise only) with labels 0, 1, 2, ...: no model can get more than one
  of them right, which caps clean accuracy below 1 - (ambiguous_eval - 1) / n_eval
  by construction. Not a blank (single-valued) image, which the validator's data
  checks would flag.
  """
  out = os.path.join(data_dir, f'span-{span}') if span is not None else data_dir
  os.makedirs(out, exist_ok=True)
  suffix = '.gz' if compress else ''
  for split, n, s in (('train', n_train, seed), ('eval', n_eval, seed + 1)):
    images, labels = fake_digits(n, s)
    if split == 'eval' and ambiguous_eval:
      images[-ambiguous_eval:] = np.random.default_rng(12345).integers(
          0, 60, size=(28, 28), dtype=np.uint8)
      labels[-ambiguous_eval:] = np.arange(ambiguous_eval) % 10
    images_stem, labels_stem = idx.SPLIT_STEMS[split]
    idx.write_idx(os.path.join(out, images_stem + suffix), images, compress)
    idx.write_idx(os.path.join(out, labels_stem + suffix), labels, compress)
  return out
