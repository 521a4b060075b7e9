"""Every evaluation attack behind one call, and the AutoAttack suite.

AutoAttack (Croce & Hein, ICML 2020) counts an image as robust only if no attack of
its suite flips it: each attack runs only on the images every earlier one left
standing (the cheap gradient attacks first, the gradient-free Square last), and the
reported figure is the worst case per image. ``flipped_by`` keeps, per image, which
member broke it, so metrics.json can say what each attack contributed and the masking
checks can see when the gradient-free Square finds what the gradient attacks missed.
"""
import dataclasses
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


def _member(attacker, x, y, attack: AttackConfig, member: str):
  if member == 'apgd-ce':
    return attacker.apgd(x, y, attack, loss='ce', salt=0)
  if member == 'apgd-t':
    x_adv, flipped = x.copy(), np.zeros(len(x), bool)
    for rank in range(2, attack.targets + 2):  # the top-`targets` other classes
      todo = np.flatnonzero(~flipped)
      if not len(todo):
        break
      xa, fl = attacker.apgd(x[todo], y[todo], attack, loss='dlr_targeted',
                             target_rank=rank, salt=rank)
      x_adv[todo[fl]] = xa[fl]
      flipped[todo[fl]] = True
    return x_adv, flipped
  if member == 'square':
    return attacker.square(x, y, attack, image_shape=IMAGE_SHAPE)
  raise ValueError(f'unknown suite member {member!r}')


def _suite(attacker, x, y, attack, members, clean_logits) -> Outcome:
  n = len(x)
  if clean_logits is None:
    clean_logits = attacker.logits(x)
  flipped_by = np.where(attacks_lib.predictions(clean_logits) != y, CLEAN,
                        ROBUST).astype(np.int8)
  x_adv = x.copy()
  robust_after, flips, seconds = {}, {}, {}
  for k, member in enumerate(members, start=1):
    todo = np.flatnonzero(flipped_by == ROBUST)
    start = time.perf_counter()
    if len(todo):
      xa, fl = _member(attacker, x[todo], y[todo], attack, member)
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
