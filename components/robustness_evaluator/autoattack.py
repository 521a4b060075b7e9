"""Every evaluation attack behind one call, and the AutoAttack suite.

AutoAttack (Croce & Hein, ICML 2020) counts an image as robust only if no attack of
its suite (APGD-CE, APGD-T, FAB-T, Square in the standard version) flips it: each
attack runs only on the images every earlier one left standing (the cheap gradient
attacks first, the gradient-free Square last), and the reported figure is the worst
case per image. ``flipped_by`` keeps, per image, which member broke it, so
metrics.json can say what each attack contributed and the masking checks can see when
the gradient-free Square finds what the gradient attacks missed.

With ``boundary_restarts``, one more member (BOUNDARY) follows the suite: the
still-robust images nearest the decision boundary get many more random starts, in
rounds, nearest first, for as long as a round breaks an image. It
spends the budget where the standard suite's single start is a draw, as Liu et al.'s
adaptive AutoAttack (A3, CVPR 2022) spends its restarts on the images it can still
break; it can only lower the figure, and the standard suite's own figure stays in
``robust_accuracy_after``.
"""
import dataclasses
import math
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from components.config import AttackConfig
from components.robustness_evaluator import attacks as attacks_lib

# flipped_by codes: ROBUST survived everything, CLEAN was misclassified before any
# attack; k >= 1 is the k-th member of the suite.
ROBUST, CLEAN = -1, 0
IMAGE_SHAPE = (28, 28, 1)
# Square may legitimately find a few images APGD missed (it is a different search);
# more than this share of the images means the gradients mislead (masking).
SQUARE_MARGIN = 0.005
# The extra member that follows the suite when AttackConfig.boundary_restarts > 0.
BOUNDARY = 'apgd-boundary'


@dataclasses.dataclass
class Outcome:
  """x_adv: the point each image was judged at (its breaking point, else the
  strongest attempt or x); logits there; flipped_by codes (see above); details for
  metrics.json."""
  x_adv: np.ndarray
  logits: np.ndarray
  flipped_by: np.ndarray
  members: Tuple[str, ...]
  details: Dict


def run_attack(attacker: attacks_lib.Attacker, x: np.ndarray, y: np.ndarray,
               attack: AttackConfig, clean_logits: Optional[np.ndarray] = None
               ) -> Outcome:
  """Any AttackConfig against one model, on (x, y)."""
  if attack.method == 'pgd':
    x_adv, logits = attacker.attack(x, y, attack)
    wrong = attacks_lib.predictions(logits) != y
    return Outcome(x_adv, logits, np.where(wrong, 1, ROBUST).astype(np.int8),
                   (attack.name,), {})
  members = tuple(attack.suite) if attack.method == 'autoattack' else (attack.method,)
  return _suite(attacker, x, y, attack, members, clean_logits)


def logit_margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
  """z_y - max_{j != y} z_j per image: how far the point is from being misclassified
  (negative when it is)."""
  z = np.array(logits, dtype=np.float64)
  rows = np.arange(len(y))
  own = z[rows, y]
  z[rows, y] = -np.inf
  return own - z.max(axis=1)


def nearest_to_boundary(margins: np.ndarray, robust: np.ndarray) -> np.ndarray:
  """Indices of the robust images, nearest the boundary (smallest margin) first;
  ties go to the earlier image, so the order is reproducible."""
  idx = np.flatnonzero(robust)
  return idx[np.argsort(margins[idx], kind='stable')]


def _member(attacker, x, y, attack: AttackConfig, member: str):
  """(x_adv, flipped, margin): the member's points and flips, and per image the
  smallest logit margin among the points it ended on (one per target for APGD-T),
  or None when no boundary member follows to read it."""
  def margin(points, labels):
    if not attack.boundary_restarts:
      return None
    return logit_margins(attacker.logits(points, member), labels)

  if member == 'apgd-ce':
    x_adv, flipped = attacker.apgd(x, y, attack, loss='ce', salt=0)
    return x_adv, flipped, margin(x_adv, y)
  if member in ('apgd-t', 'fab-t'):
    x_adv, flipped = x.copy(), np.zeros(len(x), bool)
    closest = np.full(len(x), np.inf) if attack.boundary_restarts else None
    for rank in range(2, attack.targets + 2):  # the top-`targets` other classes
      todo = np.flatnonzero(~flipped)
      if not len(todo):
        break
      if member == 'apgd-t':
        xa, fl = attacker.apgd(x[todo], y[todo], attack, loss='dlr_targeted',
                               target_rank=rank, salt=rank)
        if closest is not None:
          closest[todo] = np.minimum(closest[todo], margin(xa, y[todo]))
      else:
        # FAB's points for the images it leaves are x itself (its nearer points lie
        # beyond epsilon), so they add no margin the clean logits have not given.
        xa, fl = attacker.fab(x[todo], y[todo], attack, target_rank=rank)
      x_adv[todo[fl]] = xa[fl]
      flipped[todo[fl]] = True
    return x_adv, flipped, closest
  if member == 'square':
    x_adv, flipped = attacker.square(x, y, attack, image_shape=IMAGE_SHAPE)
    return x_adv, flipped, margin(x_adv, y)
  raise ValueError(f'unknown suite member {member!r}')


def _boundary_rounds(attacker, x, y, attack: AttackConfig, margin: np.ndarray,
                     x_adv: np.ndarray, flipped_by: np.ndarray, code: int) -> Dict:
  """The boundary member, in rounds of boundary_share of the sample, nearest the
  boundary first, for as long as a round breaks an image: the breaks extra starts
  find sit at the smallest margins (on the tutorial model 15, 8, 2, then none in
  successive 20s of 503), so a round that finds none ends it. Writes its breaks into
  x_adv and flipped_by (as ``code``); returns what it did, for metrics.json."""
  order = nearest_to_boundary(margin, flipped_by == ROBUST)
  chunk = math.ceil(attack.boundary_share * len(x))
  info = {'images': 0, 'rounds': 0, 'images_per_round': chunk,
          'starts_per_loss': attack.boundary_restarts, 'largest_margin': None,
          'broken_per_round': []}
  for start in range(0, len(order), chunk):
    todo = order[start:start + chunk]
    xa, fl = _boundary(attacker, x[todo], y[todo], attack)
    x_adv[todo[fl]] = xa[fl]
    flipped_by[todo[fl]] = code
    info['images'] += len(todo)
    info['rounds'] += 1
    info['largest_margin'] = float(margin[todo].max())
    info['broken_per_round'].append(int(fl.sum()))
    if not fl.any():
      break
  return info


# Salts of the boundary member's random starts, apart from the suite's (0 for
# APGD-CE, the target rank for APGD-T).
_BOUNDARY_SALTS = {'ce': 1001, 'dlr_targeted': 1002}


def _boundary(attacker, x, y, attack: AttackConfig):
  """(x_adv, flipped) of boundary_restarts more starts of APGD-CE, then of APGD-T at
  the runner-up class on the images CE left, each image's starts run side by side as
  copies in one batch (a restart loop over a batch of a few images would leave the
  cores idle). An image is broken if any copy is."""
  starts = attack.boundary_restarts
  single = dataclasses.replace(attack, restarts=1)
  x_adv, flipped = x.copy(), np.zeros(len(x), bool)
  for loss in ('ce', 'dlr_targeted'):
    todo = np.flatnonzero(~flipped)
    if not len(todo):
      break
    xa, fl = attacker.apgd(np.repeat(x[todo], starts, axis=0),
                           np.repeat(y[todo], starts), single, loss=loss,
                           target_rank=2, salt=_BOUNDARY_SALTS[loss])
    fl = fl.reshape(len(todo), starts)
    xa = xa.reshape((len(todo), starts) + x.shape[1:])
    hit = fl.any(axis=1)
    x_adv[todo[hit]] = xa[hit, np.argmax(fl[hit], axis=1)]
    flipped[todo[hit]] = True
  return x_adv, flipped


def _suite(attacker, x, y, attack, members, clean_logits) -> Outcome:
  n = len(x)
  if clean_logits is None:
    clean_logits = attacker.logits(x)
  flipped_by = np.where(attacks_lib.predictions(clean_logits) != y, CLEAN,
                        ROBUST).astype(np.int8)
  margin = logit_margins(clean_logits, y)
  x_adv = x.copy()
  robust_after, flips, seconds, boundary = {}, {}, {}, None
  if attack.boundary_restarts:
    members = tuple(members) + (BOUNDARY,)
  for k, member in enumerate(members, start=1):
    start = time.perf_counter()
    todo = np.flatnonzero(flipped_by == ROBUST)
    if member == BOUNDARY:
      boundary = _boundary_rounds(attacker, x, y, attack, margin, x_adv, flipped_by, k)
    elif len(todo):
      xa, fl, m = _member(attacker, x[todo], y[todo], attack, member)
      if m is not None:
        margin[todo] = np.minimum(margin[todo], m)
      x_adv[todo[fl]] = xa[fl]
      flipped_by[todo[fl]] = k
    seconds[member] = time.perf_counter() - start
    flips[member] = int(np.sum(flipped_by == k))
    robust_after[member] = float(np.mean(flipped_by == ROBUST)) if n else 0.0
  logits = attacker.logits(x_adv, f'{attack.name} adversarial')
  # An image counts as broken once an attack saw it misclassified; re-evaluating its
  # point in another batch must agree, or the number is not reproducible.
  disagree = int(np.sum((flipped_by > CLEAN) &
                        (attacks_lib.predictions(logits) == y)))
  details = {'members': list(members), 'robust_accuracy_after': robust_after,
             'flipped_by_member': flips, 'member_seconds': seconds,
             'recheck_disagreements': disagree,
             **({'boundary': boundary} if boundary is not None else {}),
             **({'square_forward_pass': attacker.square_forward_pass}
                if 'square' in members else {}),
             'flipped_by_codes': 'robust=-1, clean=0, ' + ', '.join(
                 f'{m}={k}' for k, m in enumerate(members, start=1))}
  return Outcome(x_adv, logits, flipped_by, members, details)


def robust_mask(outcome: Outcome) -> np.ndarray:
  """Worst case per image: robust only if no member (and no clean error) broke it."""
  return outcome.flipped_by == ROBUST


def masking_warnings(name: str, outcome: Outcome, context: str) -> List[str]:
  """Loud warnings when the gradient-free member beats the gradient ones."""
  warnings = []
  flips = outcome.details.get('flipped_by_member', {})
  n = len(outcome.flipped_by)
  if 'square' in flips and n and len(outcome.members) > 1:
    share = flips['square'] / n
    if share > SQUARE_MARGIN:
      warnings.append(
          f'{context}: GRADIENT MASKING SUSPECTED: the gradient-free Square attack '
          f'broke {flips["square"]} of {n} images ({100 * share:.1f}%) that every '
          f'gradient attack of {name} missed; gradient-based figures of this model '
          'are not to be trusted')
  if outcome.details.get('recheck_disagreements'):
    warnings.append(
        f'{context}: {outcome.details["recheck_disagreements"]} image(s) broken by '
        f'{name} were classified correctly when re-evaluated; the figure counts them '
        'as broken (any iterate that flips an image breaks it)')
  return warnings
