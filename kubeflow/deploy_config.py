"""Cluster-side settings of the Kubeflow deployment: images, resources, placement.

These are properties of the cluster, not of the model, so they live here rather than
in pipeline/config.py (which the local runner shares). Every default is a field of
DeployConfig; the compile CLI overrides them flag by flag.
"""
import dataclasses
import math
import re
from typing import Dict, Optional, Tuple

from kubeflow import remote_beam
from kubeflow import uris

# Where kubeflow/Dockerfile puts the project (WORKDIR) and so the curated schema.
IMAGE_APP_DIR = '/opt/app'
IMAGE_SCHEMA_PATH = f'{IMAGE_APP_DIR}/pipeline/schema/schema.pbtxt'
# The container command of every step: the image's entry point wrapper.
ENTRYPOINT_COMMAND = ('python', '-m', 'kubeflow.entrypoint')

_LABEL = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')
# [registry[:port]/]path[:tag][@sha256:digest], the Docker reference grammar.
_IMAGE = re.compile(
    r'^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*'
    r'(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?'
    r'(?:@sha256:[0-9a-f]{64})?$')
_EFFECTS = ('NoSchedule', 'PreferNoSchedule', 'NoExecute')
_MEMORY = re.compile(r'^\s*([0-9]*\.?[0-9]+)\s*(G|Gi|M|Mi|)\s*$')
_MEMORY_TO_GB = {'': 1.0, 'G': 1.0, 'Gi': 2**30 / 1e9, 'M': 1e-3, 'Mi': 2**20 / 1e9}


class DeployError(ValueError):
  """A deployment setting is invalid; the message names the flag and the value."""


@dataclasses.dataclass(frozen=True)
class Toleration:
  """A Kubernetes toleration; value None means operator Exists."""
  key: str
  effect: str = 'NoSchedule'
  value: Optional[str] = None

  def to_platform(self) -> Dict[str, str]:
    out = {'key': self.key, 'effect': self.effect,
           'operator': 'Exists' if self.value is None else 'Equal'}
    if self.value is not None:
      out['value'] = self.value
    return out


# GPU node pools are commonly tainted nvidia.com/gpu:NoSchedule (GKE, AKS, the
# NVIDIA GPU operator); tolerating it lets the Trainer pods land there.
DEFAULT_GPU_TOLERATIONS = (Toleration(key='nvidia.com/gpu'),)


@dataclasses.dataclass(frozen=True)
class DeployConfig:
  """image: every step's image; gpu_image: the Trainers' (defaults to image).
  gpus: GPUs per Trainer pod (0 trains on CPU). Memory is in GB (1e9 bytes), as the
  KFP ResourceSpec stores it. node_selector applies to the CPU steps,
  gpu_node_selector / gpu_tolerations to the Trainers; pvc_mounts to every step."""
  image: str = ''
  pipeline_root: str = ''
  data_dir: str = ''
  gpu_image: Optional[str] = None
  gpus: int = 1
  gpu_type: str = 'nvidia.com/gpu'
  trainer_cpu: float = 4.0
  trainer_memory_gb: float = 16.0
  cpu: float = 2.0
  memory_gb: float = 8.0
  schema_path: str = IMAGE_SCHEMA_PATH
  beam_args: Tuple[str, ...] = ()
  node_selector: Tuple[Tuple[str, str], ...] = ()
  gpu_node_selector: Tuple[Tuple[str, str], ...] = ()
  gpu_tolerations: Optional[Tuple[Toleration, ...]] = None  # None: the defaults
  pvc_mounts: Tuple[Tuple[str, str], ...] = ()

  @property
  def trainer_image(self) -> str:
    return self.gpu_image or self.image

  @property
  def effective_gpu_tolerations(self) -> Tuple[Toleration, ...]:
    if self.gpus == 0:
      return ()
    return DEFAULT_GPU_TOLERATIONS if self.gpu_tolerations is None else self.gpu_tolerations

  def validate(self) -> 'DeployConfig':
    check_image(self.image, '--image')
    if self.gpu_image is not None:
      check_image(self.gpu_image, '--gpu-image')
    uris.check_pipeline_root(self.pipeline_root)
    uris.check_tf_location(self.data_dir, '--data-dir')
    if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 0:
      raise DeployError(f'--gpus={self.gpus!r}: must be an integer >= 0')
    if not self.gpu_type or ' ' in self.gpu_type:
      raise DeployError(f'--gpu-type={self.gpu_type!r}: must be a Kubernetes resource '
                        'name such as nvidia.com/gpu')
    for flag, value in (('--trainer-cpu', self.trainer_cpu), ('--cpu', self.cpu),
                        ('--trainer-memory', self.trainer_memory_gb),
                        ('--memory', self.memory_gb)):
      if not _positive(value):
        raise DeployError(f'{flag}={value!r}: must be a number > 0')
    if not self.schema_path.startswith('/'):
      raise DeployError(f'--schema-path={self.schema_path!r}: must be the absolute path '
                        'of the schema inside the image')
    for arg in self.beam_args:
      if not arg.startswith('--'):
        raise DeployError(f'--beam-arg={arg!r}: Beam options look like --name=value')
    if remote_beam.is_remote(self.beam_args):
      for flag, where in (('--pipeline-root', self.pipeline_root),
                          ('--data-dir', self.data_dir)):
        if not where.startswith('gs://'):
          raise DeployError(
              f'{flag}={where!r}: with --runner={remote_beam.runner(self.beam_args)} the '
              'Beam workers open it themselves, which needs gs:// (the only store TF '
              'and Beam both open in the image)')
    for name, path in self.pvc_mounts:
      if not name or not path.startswith('/'):
        raise DeployError(f'--pvc-mount {name}:{path}: expected PVC_NAME:/absolute/path')
    return self


def _positive(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) \
      and x > 0


def check_image(image: str, flag: str) -> str:
  if not image or not image.strip():
    raise DeployError(f'{flag} is required: the container image built from '
                      'kubeflow/Dockerfile (e.g. registry.example.com/mnist-adv:1.0)')
  if not _IMAGE.match(image):
    raise DeployError(f'{flag}={image!r}: not a valid image reference '
                      '([registry[:port]/]name[:tag][@sha256:digest], name in lower case)')
  return image


def image_is_pinned(image: str) -> bool:
  """True for a digest or an explicit tag other than latest."""
  if '@sha256:' in image:
    return True
  last = image.rsplit('/', 1)[-1]
  return ':' in last and not last.endswith(':latest')


def parse_memory_gb(text: str, flag: str) -> float:
  """'16', '16G', '16Gi', '512M', '512Mi' -> GB (1e9 bytes)."""
  m = _MEMORY.match(str(text))
  if not m or float(m.group(1)) <= 0:
    raise DeployError(f'{flag}={text!r}: expected a size such as 16G, 16Gi or 512M')
  return float(m.group(1)) * _MEMORY_TO_GB[m.group(2)]


def parse_label(text: str, flag: str) -> Tuple[str, str]:
  key, sep, value = text.partition('=')
  if not sep or not _LABEL.match(key) or (value and not _LABEL.match(value)):
    raise DeployError(f'{flag} {text!r}: expected KEY=VALUE with Kubernetes label '
                      'syntax, e.g. cloud.google.com/gke-accelerator=nvidia-tesla-t4')
  return key, value


def parse_toleration(text: str, flag: str) -> Toleration:
  """'KEY[=VALUE][:EFFECT]' (effect defaults to NoSchedule)."""
  head, sep, effect = text.rpartition(':')
  if not sep or effect not in _EFFECTS:
    head, effect = text, 'NoSchedule'
  key, eq, value = head.partition('=')
  if not key or not _LABEL.match(key) or (eq and not value):
    raise DeployError(f'{flag} {text!r}: expected KEY[=VALUE][:EFFECT] with EFFECT one '
                      f'of {_EFFECTS}, e.g. nvidia.com/gpu:NoSchedule')
  return Toleration(key=key, effect=effect, value=value if eq else None)


def parse_pvc_mount(text: str, flag: str) -> Tuple[str, str]:
  name, sep, path = text.partition(':')
  if not sep or not name or not path.startswith('/'):
    raise DeployError(f'{flag} {text!r}: expected PVC_NAME:/absolute/mount/path')
  return name, path
