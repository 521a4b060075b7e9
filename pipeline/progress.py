"""Terminal progress for LocalDagRunner: one line per component, with its wall time.

LocalDagRunner reports progress only as absl INFO lines among thousands of others;
this keeps those two lines (running / finished), times them, and drops the INFO and
deprecation noise that does not help a user.
"""
import logging
import os
import re
import sys
import time
import warnings
from typing import Dict, List, Optional, TextIO, Tuple

_RUNNING = re.compile(r'Component (\S+) is running\.')
_FINISHED = re.compile(r'Component (\S+) is finished\.')
_NOISE = re.compile(
    r'deprecat|is not supported in TF2|tf\.estimator|pkg_resources|'
    r'Tensorflow version .* is not|absl::InitializeLog|cuda|TensorRT|'
    r'was not found in the model|Compiled the loaded model|'
    r'Skipping checkpoint|Value in checkpoint could not be found|'
    r'Found untraced functions|apache_beam|beam:|property_predicate|payload_format', re.IGNORECASE)


def quiet_environment() -> None:
  """Silences TF's C++ INFO/WARNING logs and Python deprecation warnings."""
  # 3 also hides the CUDA plugin registration errors TF prints on CPU-only hosts.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  os.environ.setdefault('GRPC_VERBOSITY', 'ERROR')
  # Inherited by Beam's worker processes, which would otherwise repeat each warning.
  os.environ.setdefault('PYTHONWARNINGS', 'ignore')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=UserWarning)


class ComponentTimer(logging.Filter):
  """An absl log filter that turns component start/finish lines into progress."""

  def __init__(self, stream: TextIO = sys.stdout):
    super().__init__()
    self.stream = stream
    self.started: Dict[str, float] = {}
    self.timings: List[Tuple[str, float]] = []
    self.t0 = time.monotonic()

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      msg = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return True
    m = _RUNNING.search(msg)
    if m:
      self.started[m.group(1)] = time.monotonic()
      self._say(f'▶ {m.group(1)} running')
      return False
    m = _FINISHED.search(msg)
    if m:
      node = m.group(1)
      seconds = time.monotonic() - self.started.pop(node, time.monotonic())
      self.timings.append((node, seconds))
      self._say(f'✔ {node} finished in {seconds:.1f} s')
      return False
    if record.levelno >= logging.ERROR:
      return True
    if record.levelno >= logging.WARNING:
      return not _NOISE.search(msg)
    return record.name.startswith('mnist_adv')

  def _say(self, text: str) -> None:
    elapsed = time.monotonic() - self.t0
    self.stream.write(f'[{elapsed:7.1f}s] {text}\n')
    self.stream.flush()


def install(timer: Optional[ComponentTimer] = None) -> ComponentTimer:
  """Routes absl/TFX logging through timer (a new one on stdout if None); returns it."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  timer = timer or ComponentTimer(sys.stdout)
  absl_logging.set_verbosity(absl_logging.INFO)
  handler = absl_logging.get_absl_handler()
  absl_logger = logging.getLogger('absl')
  # One timer at a time: an earlier run's timer would swallow this run's lines.
  for filterer in (handler, absl_logger):
    for old in [f for f in filterer.filters if isinstance(f, ComponentTimer)]:
      filterer.removeFilter(old)
  handler.addFilter(timer)
  # Libraries may add their own root handlers; a logger-level filter covers them too.
  absl_logger.addFilter(timer)
  root = logging.getLogger()
  if handler not in root.handlers:
    root.addHandler(handler)
  for name in ('tensorflow', 'apache_beam', 'h5py', 'matplotlib'):
    logging.getLogger(name).setLevel(logging.ERROR)
  return timer
