import argparse

import pytest

from pipeline import config as config_lib
from pipeline import flags


def _parse(argv):
  return flags.add_config_flags(argparse.ArgumentParser()).parse_args(argv)


def test_defaults_are_the_tutorial_hparams():
  c = config_lib.PipelineConfig().validate()
  assert c.model.conv_filters == (32, 64, 64) and c.model.kernel_size == 3
  assert c.model.pool_size == 2 and c.model.dense_units == 64
  assert (c.train.batch_size, c.train.epochs) == (32, 5)
  assert (c.adv.multiplier, c.adv.adv_step_size, c.adv.adv_grad_norm) == (
      0.2, 0.2, 'infinity')
  assert c.adv.pgd_iterations == 1 and c.adv.epsilon == pytest.approx(0.2)


@pytest.mark.parametrize('field,value,message', [
    ('adv.adv_grad_norm', 'l1', "adv_grad_norm='l1'"),
    ('adv.adv_step_size', -0.1, 'adv_step_size=-0.1'),
    ('adv.pgd_iterations', 0, 'pgd_iterations=0'),
    ('adv.clip_value_min', 1.0, 'clip_value_min=1.0 must be < clip_value_max=1.0'),
    ('eval.thresholds.min_clean_accuracy', 1.5, 'min_clean_accuracy=1.5'),
    ('eval.thresholds.max_drop', -0.1, 'max_drop=-0.1'),
    ('train.epochs', 0, 'epochs=0'),
    ('train.precision', 'float16', "precision='float16'"),
    ('train.lr_schedule', 'step', "lr_schedule='step'"),
])
def test_bad_values_are_rejected_with_the_field_named(field, value, message):
  with pytest.raises(config_lib.ConfigError, match=message.replace('(', r'\(')):
    config_lib.PipelineConfig().replace(**{field: value})


def test_threshold_for_unknown_attack_is_rejected():
  with pytest.raises(config_lib.ConfigError, match="unknown attack 'cw'"):
    flags.config_from_args(_parse(['--min-attack-accuracy', 'cw=0.5']))


def test_flags_override_one_field_each():
  c = flags.config_from_args(_parse([
      '--epochs', '1', '--multiplier', '0.3', '--adv-grad-norm', 'l2',
      '--min-attack-accuracy', 'pgd40=0.5', '--max-drop', 'none',
      '--no-base-model', '--beam-workers', '2', '--precision', 'mixed_bfloat16']))
  d = config_lib.PipelineConfig()
  assert c.train.epochs == 1 and c.adv.multiplier == 0.3 and c.adv.adv_grad_norm == 'l2'
  assert c.eval.thresholds.min_attack_accuracy == {'fgsm': 0.8, 'pgd40': 0.5,
                                                  'autoattack': 0.45}
  assert c.eval.thresholds.max_drop is None and c.train_base_model is False
  assert '--direct_num_workers=2' in c.beam_args and c.train.precision == 'mixed_bfloat16'
  assert c.adv.adv_step_size == d.adv.adv_step_size and c.model == d.model


def test_robust_presets_gate_on_the_full_standard_suite_and_fab_t_flag_adds_it():
  full = ('apgd-ce', 'apgd-t', 'fab-t', 'square')
  for preset in ('robust', 'robust-eps0.3'):
    c = flags.config_from_args(_parse(['--preset', preset]))
    assert {a.suite for a in c.eval.attacks if a.method == 'autoattack'} == {full}
  plain = flags.config_from_args(_parse([]))
  (default_suite,) = [a for a in plain.eval.attacks if a.method == 'autoattack']
  assert default_suite.suite == ('apgd-ce', 'apgd-t')
  c = flags.config_from_args(_parse(['--fab-t']))
  (with_fab,) = [a for a in c.eval.attacks if a.method == 'autoattack']
  assert with_fab.suite == ('apgd-ce', 'apgd-t', 'fab-t')
  assert [a.name for a in c.eval.attacks] == [a.name for a in plain.eval.attacks]


def test_preset_round_trips_through_json_and_cli():
  c = flags.config_from_args(_parse(['--preset', 'robust', '--epochs', '3']))
  assert c.preset == 'robust' and c.adv.pgd_iterations == 7 and c.train.epochs == 3
  assert c.eval.thresholds.min_attack_accuracy['pgd40'] == 0.9
  assert config_lib.PipelineConfig.from_json(c.to_json()) == c
  assert c.train.selection_start_epoch == 7
  c = flags.config_from_args(_parse(['--preset', 'robust', '--selection-start-epoch', '2']))
  assert c.train.selection_start_epoch == 2
  with pytest.raises(config_lib.ConfigError, match='selection_start_epoch=0'):
    c.replace(**{'train.selection_start_epoch': 0})
  assert c.train.robust_eval_method == 'pgd'
  c = flags.config_from_args(_parse(['--preset', 'robust', '--selection-attack', 'apgd-ce']))
  assert c.train.robust_eval_method == 'apgd-ce'
  assert config_lib.PipelineConfig.from_json(c.to_json()) == c
  with pytest.raises(config_lib.ConfigError, match="robust_eval_method='fgsm'"):
    c.replace(**{'train.robust_eval_method': 'fgsm'})
  with pytest.raises(SystemExit):
    _parse(['--preset', 'nope'])


def test_unknown_json_field_is_named():
  with pytest.raises(config_lib.ConfigError, match=r"unknown AdvConfig field\(s\): \['step'\]"):
    config_lib.PipelineConfig.from_dict({'adv': {'step': 1}})
