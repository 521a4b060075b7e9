"""The two figures of the evaluation, rendered to PNG bytes.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global
backend switch), and returns bytes so the executor can write them to any
filesystem TFX supports.
"""
import io
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Line style per attack family, colour per model (candidate, base, baseline).
_FAMILY_STYLE = {'fgsm': '--', 'pgd': '-'}
_MODEL_COLOURS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple')


def _png(fig: Figure) -> bytes:
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=fig.dpi)
  return buf.getvalue()


def robustness_curve(curves: Mapping[str, Mapping[str, Mapping[float, float]]],
                     clean: Mapping[str, float], title: str = '') -> bytes:
  """Accuracy against epsilon, one colour per model and one line style per attack.

  curves[model][family][epsilon] = accuracy; clean[model] is the accuracy on the
  same sample at epsilon 0, where every curve starts.
  """
  fig = Figure(figsize=(7, 4.5), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  for i, (model, families) in enumerate(curves.items()):
    colour = _MODEL_COLOURS[i % len(_MODEL_COLOURS)]
    for family, points in families.items():
      eps = sorted(points)
      xs, ys = list(eps), [points[e] for e in eps]
      if model in clean:
        xs, ys = [0.0] + xs, [clean[model]] + ys
      ax.plot(xs, ys, _FAMILY_STYLE.get(family, ':'), marker='o', color=colour,
              label=f'{model} {family}')
  ax.set_xlabel('epsilon (L-infinity radius, pixels in [0, 1])')
  ax.set_ylabel('accuracy')
  ax.set_ylim(-0.02, 1.02)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize='small')
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return _png(fig)


def perturbed_examples(images: np.ndarray, labels: Sequence[int],
                       predictions: Mapping[str, Sequence[int]],
                       title: str = '', columns: int = 4,
                       image_size: Optional[int] = None) -> bytes:
  """Grid of perturbed images, each titled with its true label and every model's
  prediction (as in the NSL tutorial's figure of base vs adversarial model)."""
  images = np.asarray(images)
  n = len(images)
  if n == 0:
    raise ValueError('no images to plot')
  side = image_size or int(round(np.sqrt(images[0].size)))
  if side * side != images[0].size:
    raise ValueError(f'images of {images[0].size} values are not square')
  rows = -(-n // columns)
  title_lines = 1 + len(predictions)
  fig = Figure(figsize=(2.2 * columns, (2.1 + 0.17 * title_lines) * rows + 0.5),
               dpi=100)
  for i in range(n):
    ax = fig.add_subplot(rows, columns, i + 1)
    ax.imshow(images[i].reshape(side, side), cmap='gray', vmin=0.0, vmax=1.0)
    ax.axis('off')
    lines = [f'label: {int(labels[i])}']
    lines += [f'{model}: {int(p[i])}' for model, p in predictions.items()]
    ax.set_title('\n'.join(lines), fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout(rect=(0, 0, 1, 0.98 if title else 1))
  return _png(fig)
