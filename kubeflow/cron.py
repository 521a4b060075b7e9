"""Validation of KFP recurring-run cron expressions, before anything is submitted.

KFP's scheduler parses cron with 6 space-separated fields, seconds first:
`second minute hour day-of-month month day-of-week`, e.g. '0 0 3 * * *' is 03:00
every day. A 5-field Unix crontab line would be read shifted by one field, so it is
rejected with the 6-field equivalent as a hint.
"""
import re
from typing import Dict, Tuple

# name, lowest, highest, names accepted for values
_FIELDS: Tuple[Tuple[str, int, int, Dict[str, int]], ...] = (
    ('second', 0, 59, {}),
    ('minute', 0, 59, {}),
    ('hour', 0, 23, {}),
    ('day-of-month', 1, 31, {}),
    ('month', 1, 12, {m: i + 1 for i, m in enumerate(
        'JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC'.split())}),
    ('day-of-week', 0, 6, {d: i for i, d in enumerate('SUN MON TUE WED THU FRI SAT'.split())}),
)
_ITEM = re.compile(r'^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/([0-9]+))?$')


class CronError(ValueError):
  """Not a valid KFP cron expression; the message names the field."""


def _value(text: str, field: Tuple[str, int, int, Dict[str, int]], expr: str) -> int:
  name, lo, hi, names = field
  if text.upper() in names:
    return names[text.upper()]
  if not text.isdigit() or not lo <= int(text) <= hi:
    raise CronError(f'cron {expr!r}: {name} value {text!r} is not in {lo}-{hi}'
                    + (f' or {"/".join(names)}' if names else ''))
  return int(text)


def _check_field(text: str, field: Tuple[str, int, int, Dict[str, int]], expr: str) -> None:
  name = field[0]
  if text == '?':
    if name not in ('day-of-month', 'day-of-week'):
      raise CronError(f"cron {expr!r}: '?' is only allowed in day-of-month or day-of-week")
    return
  for item in text.split(','):
    m = _ITEM.match(item)
    if not m:
      raise CronError(f'cron {expr!r}: {name} {item!r} is not *, N, N-M, or one of them /STEP')
    body, step = m.group(1), m.group(2)
    if step is not None and int(step) == 0:
      raise CronError(f'cron {expr!r}: {name} step in {item!r} must be >= 1')
    if body == '*':
      continue
    lo_text, _, hi_text = body.partition('-')
    lo = _value(lo_text, field, expr)
    if hi_text and _value(hi_text, field, expr) < lo:
      raise CronError(f'cron {expr!r}: {name} range {body!r} runs backwards')


def validate(expr: str) -> str:
  """Returns the expression normalized to single spaces, or raises CronError."""
  fields = expr.split() if isinstance(expr, str) else []
  if len(fields) == 5:
    raise CronError(f'cron {expr!r} has 5 fields; KFP wants 6 with seconds first, '
                    f"e.g. '0 {' '.join(fields)}'")
  if len(fields) != 6:
    raise CronError(f'cron {expr!r}: expected 6 space-separated fields '
                    '(second minute hour day-of-month month day-of-week), '
                    "e.g. '0 0 3 * * *' for 03:00 daily")
  for text, field in zip(fields, _FIELDS):
    _check_field(text, field, expr)
  return ' '.join(fields)
