"""Flags: each sets exactly its config field, unset flags keep the preset's values,
and every field a component reads is in the section the pipeline hands it."""
import argparse
import ast
import glob
import os

import pytest

from components import config as components_config
from pipeline import config as config_lib
from pipeline import flags
from pipeline import pipeline as pipeline_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
  return flags.add_config_flags(argparse.ArgumentParser()).parse_args(argv)


def _get(config, dotted):
  for part in dotted.split('.'):
    config = getattr(config, part)
  return config


def _other_value(flag: flags.Flag, current):
  choices = flag.kwargs.get('choices')
  if choices:
    return next(c for c in choices if c != current)
  kind = flag.kwargs.get('type', str)
  if kind is flags._bool:  # pylint: disable=protected-access
    return not current
  if isinstance(current, bool):
    return not current
  if isinstance(current, int) or kind is int:
    return (current or 0) + 1
  if isinstance(current, float) or kind in (float, flags._optional_float):  # pylint: disable=protected-access
    return round((current or 0.0) + 0.01, 4)
  return f'{current or "x"}-changed'


@pytest.mark.parametrize('flag', flags.FLAGS, ids=lambda f: f.name)
def test_each_flag_sets_its_field_and_nothing_else(flag):
  d = config_lib.PipelineConfig()
  if flag.field == 'adv.random_init':
    d = d.replace(**{'adv.pgd_epsilon': 0.1})
  value = _other_value(flag, _get(d, flag.field))
  argv = [flag.name, str(value).lower() if isinstance(value, bool) else str(value)]
  if flag.field == 'adv.random_init':
    argv += ['--pgd-epsilon', '0.1']
  c = flags.config_from_args(_parse(argv))
  assert _get(c, flag.field) == value
  expected = d.replace(**{flag.field: value})
  assert c == expected


def test_unset_flags_keep_the_presets_values():
  c = flags.config_from_args(_parse(['--preset', 'robust']))
  assert c == config_lib.apply_preset(config_lib.PipelineConfig(), 'robust')


def test_none_is_a_value_for_nullable_flags():
  c = flags.config_from_args(_parse(['--max-drop', 'none', '--pgd-epsilon', 'none']))
  assert c.eval.thresholds.max_drop is None and c.adv.pgd_epsilon is None


@pytest.mark.parametrize('argv,message', [
    (['--max-drop', 'abc'], "'abc' is not a number or none"),
    (['--random-init', 'maybe'], "'maybe' is not a boolean"),
])
def test_bad_values_name_the_value(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    _parse(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_every_flag_names_a_real_field_once():
  names = [f.name for f in flags.FLAGS]
  assert len(names) == len(set(names))
  d = config_lib.PipelineConfig()
  for f in flags.FLAGS:
    _get(d, f.field)  # raises AttributeError for a stale field


def _config_reads(paths):
  """(path, function, annotated config class, dotted chain) for every attribute
  chain read off a function's ``config`` parameter."""
  reads = []
  for path in paths:
    tree = ast.parse(open(path).read(), path)
    for fn in ast.walk(tree):
      if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      arg = next((a for a in fn.args.args + fn.args.kwonlyargs if a.arg == 'config'),
                 None)
      if arg is None:
        continue
      cls = getattr(arg.annotation, 'id', None) or getattr(arg.annotation, 'attr', None)
      for node in ast.walk(fn):
        chain, cur = [], node
        while isinstance(cur, ast.Attribute):
          chain.append(cur.attr)
          cur = cur.value
        if chain and isinstance(cur, ast.Name) and cur.id == 'config':
          reads.append((path, fn.name, cls, '.'.join(reversed(chain))))
  return reads


def _resolves(obj, dotted):
  for part in dotted.split('.'):
    if not hasattr(obj, part):
      return False
    obj = getattr(obj, part)
  return True


def _sources(folder):
  return [p for p in glob.glob(os.path.join(REPO, 'components', folder, '*.py'))
          if not p.endswith('_test.py')]


@pytest.mark.parametrize('folder,section', [
    ('trainer', 'TrainerConfig'), ('robustness_evaluator', 'EvalConfig')])
def test_components_read_only_their_own_section(folder, section):
  """E.g. config.eval.batch_size read inside the Trainer: the Trainer gets only
  TrainerConfig, so that value would silently be the default and miss its cache key."""
  reads = _config_reads(_sources(folder))
  assert reads, f'no config reads found under components/{folder}'
  bad = []
  for path, fn, cls, chain in reads:
    assert cls is not None, f'{path}:{fn}: annotate its config parameter'
    if not _resolves(getattr(components_config, cls)(**_required(cls)), chain):
      bad.append(f'{os.path.relpath(path, REPO)}:{fn} reads {cls}.{chain}')
  sections = {cls for _, _, cls, _ in reads}
  assert section in sections
  assert not bad, 'reads outside the section: ' + '; '.join(bad)


def _required(cls):
  return {'name': 'x'} if cls == 'AttackConfig' else {}


def test_trainer_cache_key_follows_its_section_only():
  c = config_lib.PipelineConfig()
  key = pipeline_lib.trainer_config_json(c)
  assert components_config.TrainerConfig.from_json(key) == c.trainer_config()
  assert pipeline_lib.trainer_config_json(c.replace(**{'eval.batch_size': 7})) == key
  assert pipeline_lib.trainer_config_json(
      c.replace(**{'train.eval_batch_size': 7})) != key
