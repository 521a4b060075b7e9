"""RobustnessEvaluator executor end to end on tiny linear SavedModels and tiny
transformed TFRecords, plus the faults that must fail without a blessing."""
import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import serving_contract as contract
from components.adversarial import testing as attack_testing
from components.robustness_evaluator import attacks
from components.robustness_evaluator import evaluation as evaluation_lib
from components.robustness_evaluator import executor as executor_lib
from components.robustness_evaluator import metrics
from components.robustness_evaluator import spec
from components.config import AttackConfig, ConfigError, EvalConfig, Thresholds

PIXELS, CLASSES, N = 784, 10, 48
ATTACKS = (AttackConfig('fgsm', epsilon=0.2),
           AttackConfig('pgd3', epsilon=0.2, steps=3, step_size=0.1, random_start=True,
                        restarts=2))


def _config(**thresholds) -> EvalConfig:
  return EvalConfig(
      attacks=ATTACKS, epsilon_sweep=(0.1, 0.2), sweep_sample_size=24, sample_size=32,
      batch_size=16, seed=0,
      thresholds=Thresholds(**dict(
          dict(min_clean_accuracy=0.5, min_attack_accuracy={'fgsm': 0.0},
               max_drop=1.0, min_eval_examples=1), **thresholds)))


class _Linear(tf.Module):
  """logits = x W + b behind the contract's normalized_logits signature."""

  def __init__(self, w, b):
    super().__init__()
    self.w = tf.Variable(w, dtype=tf.float32)
    self.b = tf.Variable(b, dtype=tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, PIXELS], tf.float32)])
  def normalized_logits(self, image_xf):
    return {'logits': tf.matmul(image_xf, self.w) + self.b}


def _model(root, name, artifact_id, w, b, signature='normalized_logits'):
  model = standard_artifacts.Model()
  model.uri = os.path.join(root, name)
  model.id = artifact_id
  module = _Linear(w, b)
  tf.saved_model.save(module, os.path.join(model.uri, 'Format-Serving'),
                      signatures={signature: module.normalized_logits})
  return model


class _SplitCnn(tf.Module):
  """A small CNN with the split signatures the Trainer exports (local_split.py);
  ``head_seed`` other than ``seed`` gives a split that is not the model."""

  def __init__(self, seed, head_seed):
    super().__init__()
    self._local, self._logits = attack_testing.small_cnn(seed, pooled=True)
    self._head = attack_testing.small_cnn(head_seed, pooled=True)[0].head_fn

  @tf.function(input_signature=[tf.TensorSpec([None, PIXELS], tf.float32)])
  def normalized_logits(self, image_xf):
    return {contract.LOGITS: self._logits(image_xf)}

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
  def local_features(self, image_patch):
    return {contract.FEATURES: self._local.features_fn(image_patch)}

  @tf.function(input_signature=[tf.TensorSpec([None, 5, 5, 6], tf.float32)])
  def features_logits(self, features):
    return {contract.LOGITS: self._head(features)}

  @tf.function(input_signature=[])
  def local_geometry(self):
    return {contract.STRIDE: tf.constant(self._local.stride),
            contract.RECEPTIVE_FIELD: tf.constant(self._local.receptive_field)}


def _cnn_model(root, name, artifact_id, head_seed=0, split=True):
  model = standard_artifacts.Model()
  model.uri = os.path.join(root, name)
  model.id = artifact_id
  module = _SplitCnn(0, head_seed)
  names = ((contract.NORMALIZED_LOGITS, contract.LOCAL_FEATURES,
            contract.FEATURES_LOGITS, contract.LOCAL_GEOMETRY) if split
           else (contract.NORMALIZED_LOGITS,))
  tf.saved_model.save(module, os.path.join(model.uri, 'Format-Serving'),
                      signatures={n: getattr(module, n) for n in names})
  return model


def _examples(root, name, x, y):
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(root, name)
  examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  split = os.path.join(examples.uri, 'Split-eval')
  os.makedirs(split)
  path = os.path.join(split, 'transformed_examples-00000-of-00001.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for image, label in zip(x, y):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          'image_xf': tf.train.Feature(float_list=tf.train.FloatList(value=image)),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      })).SerializeToString())
  return examples


@pytest.fixture(scope='module')
def world(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('world'))
  rng = np.random.default_rng(0)
  protos = (rng.random((CLASSES, PIXELS)) < 0.2).astype(np.float32)
  y = np.arange(N) % CLASSES
  x = np.clip(0.3 * protos[y] + 0.4 + rng.normal(0, 0.3, (N, PIXELS)), 0, 1).astype(
      np.float32)
  w = (protos - protos.mean(0)).T * 0.05
  zeros = np.zeros(CLASSES, np.float32)
  return dict(
      root=root, x=x, y=y, w=w,
      examples=_examples(root, 'examples', x, y),
      empty=_examples(root, 'empty', x[:0], y[:0]),
      candidate=_model(root, 'candidate', 11, w, zeros),
      base=_model(root, 'base', 12, w * 3.0, zeros),
      baseline=_model(root, 'baseline', 13, w * 2.0, zeros),
      biased=_model(root, 'biased', 16, w, np.eye(CLASSES, dtype=np.float32)[0] * 2),
      nan=_model(root, 'nan', 14, w, np.full(CLASSES, np.nan, np.float32)),
      unsigned=_model(root, 'unsigned', 15, w, zeros, signature='serving_default'),
      cnn=_cnn_model(root, 'cnn', 17),
      # labelled by the CNN itself, so every clean image is correct
      cnn_examples=_examples(root, 'cnn_examples', x, np.argmax(
          attack_testing.small_cnn(0)[1](x), axis=-1)),
      cnn_unsplit=_cnn_model(root, 'cnn_unsplit', 18, split=False),
      cnn_bad_split=_cnn_model(root, 'cnn_bad_split', 19, head_seed=1))


def _hashes(*dirs):
  out = {}
  for d in dirs:
    for dirpath, _, files in os.walk(d):
      for name in files:
        with open(os.path.join(dirpath, name), 'rb') as f:
          out[os.path.join(dirpath, name)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _run(world, tmp_path, config, **models):
  evaluation = standard_artifacts.ModelEvaluation()
  evaluation.uri = str(tmp_path / 'evaluation')
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  os.makedirs(blessing.uri)
  inputs = {'model': [models.pop('model', world['candidate'])],
            'examples': [models.pop('examples', world['examples'])]}
  inputs.update({k: [v] for k, v in models.items()})
  executor_lib.Executor().Do(
      inputs, {'evaluation': [evaluation], 'blessing': [blessing]},
      {'config': spec.eval_config_to_json(config)})
  return evaluation, blessing


@pytest.fixture(scope='module')
def blessed_run(world, tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('blessed')
  inputs = [world[k].uri for k in ('candidate', 'base', 'baseline', 'examples')]
  before = _hashes(*inputs)
  evaluation, blessing = _run(world, tmp_path, _config(), base_model=world['base'],
                              baseline_model=world['baseline'])
  with open(os.path.join(evaluation.uri, spec.METRICS_FILE)) as f:
    report = json.load(f)
  return dict(evaluation=evaluation, blessing=blessing, report=report,
              unchanged=before == _hashes(*inputs))


def test_writes_metrics_and_both_figures(blessed_run):
  files = sorted(os.listdir(blessed_run['evaluation'].uri))
  assert files == ['metrics.json', 'perturbed_examples.png', 'robustness_curve.png']
  for png in files[1:]:
    with open(os.path.join(blessed_run['evaluation'].uri, png), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_figures_are_right_for_every_model(world, blessed_run):
  report = blessed_run['report']
  assert set(report['models']) == {'candidate', 'base', 'baseline'}
  x, y, w = world['x'], world['y'], world['w']
  for role, scale in (('candidate', 1.0), ('base', 3.0), ('baseline', 2.0)):
    model = report['models'][role]
    assert model['clean']['accuracy'] == pytest.approx(
        np.mean(np.argmax(x @ (w * scale), 1) == y))
    assert model['clean']['num_examples'] == N
    assert set(model['clean']['per_class']) == {str(c) for c in range(CLASSES)}
    fgsm = model['attacks']['fgsm']
    assert fgsm['num_examples'] == 32 and fgsm['settings']['step_size'] == 0.2
    assert fgsm['accuracy'] < model['clean']['accuracy']   # the attack bites
    assert model['attacks']['pgd3']['settings']['restarts'] == 2
    sweep = model['sweep']
    assert sweep['sample_size'] == 24
    assert set(sweep['accuracy']) == {'fgsm', 'pgd'}
    assert set(sweep['accuracy']['pgd']) == {'0.1', '0.2'}
  # A linear model's FGSM accuracy is the same for any positive scale of W.
  assert report['models']['base']['attacks']['fgsm']['accuracy'] == pytest.approx(
      report['models']['candidate']['attacks']['fgsm']['accuracy'])


def test_side_by_side_table_of_the_tutorial(blessed_run):
  report = blessed_run['report']
  table = report['comparison_table']
  assert table['columns'] == ['clean', 'fgsm transfer-from-base', 'fgsm white-box',
                              'pgd3 transfer-from-base', 'pgd3 white-box']
  assert set(table['rows']) == {'base', 'adversarial'}
  base, adv = table['rows']['base'], table['rows']['adversarial']
  models = report['models']
  assert base['fgsm white-box'] == base['fgsm transfer-from-base'] == (
      models['base']['attacks']['fgsm']['accuracy'])
  assert adv['fgsm white-box'] == models['candidate']['attacks']['fgsm']['accuracy']
  assert adv['fgsm transfer-from-base'] == (
      report['transfer_from_base']['fgsm']['candidate']['accuracy'])
  # Same sign of gradient for W and 3W: the transferred FGSM is the white-box one.
  assert adv['fgsm transfer-from-base'] == pytest.approx(adv['fgsm white-box'])
  assert 'baseline' in report['transfer_from_base']['pgd3']


def test_blessing_markers_and_properties(world, blessed_run):
  report, blessing = blessed_run['report'], blessed_run['blessing']
  assert report['blessed'] is True
  assert sorted(os.listdir(blessing.uri)) == ['BLESSED', 'checks.json']
  assert blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_string_custom_property('current_model') == world['candidate'].uri
  assert blessing.get_int_custom_property('current_model_id') == 11
  assert blessing.get_string_custom_property('baseline_model') == world['baseline'].uri
  assert blessing.get_int_custom_property('baseline_model_id') == 13
  checks = json.loads(blessing.get_string_custom_property('checks'))
  assert checks == report['checks']
  names = {c['name'] for c in checks}
  assert {'min_clean_accuracy', 'min_attack_accuracy/fgsm', 'max_drop/clean',
          'max_drop/fgsm', 'max_drop/pgd3'} == names
  for c in checks:
    assert set(c) >= {'name', 'value', 'threshold', 'comparison', 'passed'}
  assert blessed_run['evaluation'].get_float_custom_property(
      'clean_accuracy') == report['models']['candidate']['clean']['accuracy']


def test_attacks_leave_models_and_examples_on_disk_unchanged(blessed_run):
  assert blessed_run['unchanged']


def test_not_blessed_when_a_threshold_fails(world, tmp_path):
  # Without base and baseline: the optional inputs really are optional.
  evaluation, blessing = _run(world, tmp_path,
                              _config(min_attack_accuracy={'fgsm': 1.0}))
  assert sorted(os.listdir(blessing.uri)) == ['NOT_BLESSED', 'checks.json']
  assert blessing.get_int_custom_property('blessed') == 0
  assert not blessing.has_custom_property('baseline_model_id')
  assert 'min_attack_accuracy/fgsm' in blessing.get_string_custom_property(
      'blessing_message')
  with open(os.path.join(evaluation.uri, spec.METRICS_FILE)) as f:
    report = json.load(f)
  assert report['blessed'] is False and 'comparison_table' not in report
  (failed,) = [c for c in report['checks'] if not c['passed']]
  assert failed['name'] == 'min_attack_accuracy/fgsm' and failed['threshold'] == 1.0


def test_drop_against_the_baseline_blocks_the_blessing(world, tmp_path):
  # 'biased' favours class 0, so it is worse than the blessed baseline; absolute
  # thresholds are off, only the drop can fail it.
  evaluation, blessing = _run(
      world, tmp_path, _config(max_drop=0.05, min_clean_accuracy=0.0),
      model=world['biased'], baseline_model=world['candidate'])
  checks = {c['name']: c for c in json.loads(
      blessing.get_string_custom_property('checks'))}
  drop = checks['max_drop/clean']
  assert drop['baseline_value'] - drop['candidate_value'] > 0.05
  assert not drop['passed'] and checks['min_clean_accuracy']['passed']
  assert blessing.get_int_custom_property('blessed') == 0
  assert blessing.get_int_custom_property('baseline_model_id') == 11
  assert os.path.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))


@pytest.mark.parametrize('fault,error', [
    (dict(model='unsigned'), "no 'normalized_logits' signature"),
    (dict(examples='empty'), 'no examples'),
    (dict(model='nan'), 'NaN'),
    (dict(base_model='nan'), 'base model.*NaN'),
])
def test_faults_fail_without_a_blessing(world, tmp_path, fault, error):
  with pytest.raises((evaluation_lib.EvaluationError, attacks.NonFiniteLogitsError),
                     match=error):
    _run(world, tmp_path, _config(), **{k: world[v] for k, v in fault.items()})
  assert os.listdir(tmp_path / 'blessing') == []


def test_config_json_round_trip_and_errors():
  config = _config()
  assert spec.eval_config_from_json(
      spec.eval_config_to_json(config)) == config
  with pytest.raises(ConfigError, match='not valid JSON'):
    spec.eval_config_from_json('{')
  with pytest.raises(ConfigError, match='min_clean_accuracy'):
    spec.eval_config_from_json(json.dumps(
        {'thresholds': {'min_clean_accuracy': 1.5}}))


def test_ordering_warnings_name_the_violations():
  config = _config()
  report = {
      'attacks': {
          'fgsm': {'accuracy': 0.5, 'num_examples': 32, 'clean_accuracy_on_sample': 0.9},
          'pgd3': {'accuracy': 0.6, 'num_examples': 32, 'clean_accuracy_on_sample': 0.9}},
      'sweep': {'clean_accuracy': 0.9, 'accuracy': {
          'fgsm': {'0.1': 0.4, '0.2': 0.5}, 'pgd': {'0.1': 0.3, '0.2': 0.55}}}}
  run = evaluation_lib.ModelRun(report, np.zeros(0), {})
  warnings = evaluation_lib.ordering_warnings('candidate', run, config)
  assert all('gradients are masked' in w for w in warnings)
  assert [w.split(': accuracy under ')[1].split(': attack')[0] for w in warnings] == [
      'pgd3 (0.6000) is above fgsm (0.5000)',       # configured attacks, same eps
      'pgd (0.5500) is above fgsm (0.5000)',        # sweep at eps 0.2
      'fgsm eps=0.2 (0.5000) is above fgsm eps=0.1 (0.4000)',  # more eps, more acc
      'pgd eps=0.2 (0.5500) is above pgd eps=0.1 (0.3000)']
  assert warnings[0].startswith('candidate model, infinity eps=0.2, first 32')
  report['attacks']['pgd3']['accuracy'] = 0.5
  report['sweep']['accuracy'] = {'fgsm': {'0.1': 0.4, '0.2': 0.3},
                                 'pgd': {'0.1': 0.3, '0.2': 0.3}}
  assert evaluation_lib.ordering_warnings('candidate', run, config) == []


def test_clean_only_config(world, tmp_path):
  config = dataclasses.replace(
      _config(), attacks=(),
      thresholds=Thresholds(min_clean_accuracy=0.5, min_attack_accuracy={},
                            min_eval_examples=1))
  evaluation, blessing = _run(world, tmp_path, config, base_model=world['base'])
  with open(os.path.join(evaluation.uri, spec.METRICS_FILE)) as f:
    report = json.load(f)
  assert report['comparison_table']['columns'] == ['clean']
  assert report['models']['candidate']['attacks'] == {}
  assert blessing.get_int_custom_property('blessed') == 1


def test_baseline_figures_are_reused_when_model_data_and_attacks_are_unchanged(
    world, tmp_path):
  """Run 1 evaluates the baseline model as a candidate; run 2 (same data and
  attacks) reuses those figures through the baseline's blessing, and a changed
  attack is recomputed."""
  config = _config()
  first_eval, first_blessing = _run(world, tmp_path / 'one', config,
                                    model=world['baseline'])
  second_eval, _ = _run(world, tmp_path / 'two', config, baseline_model=world['baseline'],
                        baseline_blessing=first_blessing)
  with open(os.path.join(first_eval.uri, spec.METRICS_FILE)) as f:
    first = json.load(f)['models']['candidate']
  with open(os.path.join(second_eval.uri, spec.METRICS_FILE)) as f:
    second = json.load(f)['models']['baseline']
  assert set(second['reused']) == {a.name for a in ATTACKS} | {'sweep'}
  for a in ATTACKS:
    assert second['attacks'][a.name]['correct'] == first['attacks'][a.name]['correct']
  changed = dataclasses.replace(config, attacks=(
      ATTACKS[0], dataclasses.replace(ATTACKS[1], steps=4)))
  third_eval, _ = _run(world, tmp_path / 'three', changed,
                       baseline_model=world['baseline'], baseline_blessing=first_blessing)
  with open(os.path.join(third_eval.uri, spec.METRICS_FILE)) as f:
    third = json.load(f)['models']['baseline']
  assert third['reused'] == ['fgsm']   # pgd3 changed, and with it the PGD curve


def test_autoattack_is_gated_and_the_base_model_gets_fgsm_and_pgd_only(world, tmp_path):
  suite = AttackConfig('autoattack', method='autoattack', epsilon=0.2, steps=5,
                       targets=1, queries=20, sample_size=32)
  config = dataclasses.replace(
      _config(), attacks=ATTACKS + (suite,),
      thresholds=Thresholds(min_clean_accuracy=0.0, max_drop=None, min_eval_examples=1,
                            min_attack_accuracy={'autoattack': 0.0}))
  evaluation, blessing = _run(world, tmp_path, config, base_model=world['base'])
  with open(os.path.join(evaluation.uri, spec.METRICS_FILE)) as f:
    report = json.load(f)
  cand = report['models']['candidate']['attacks']
  assert cand['autoattack']['num_examples'] == 32 and 'flipped_by' in cand['autoattack']
  # worst case per image: never above the single attacks on the same images
  worst = cand['autoattack']['accuracy']
  assert worst <= min(cand['pgd3']['accuracy'], cand['fgsm']['accuracy']) + 1e-9
  assert 'autoattack' not in report['models']['base']['attacks']
  assert 'apgd-ce' in report['models']['candidate']['sweep']['accuracy']
  table = report['comparison_table']
  assert table['rows']['base']['autoattack white-box'] is None
  assert 'autoattack transfer-from-base' not in table['columns']
  assert any(c['name'] == 'min_attack_accuracy/autoattack' for c in report['checks'])
  assert set(report['sanity']) >= {'sample_size'}
  # Curve points the configured attacks already measured are taken, not re-attacked:
  # FGSM and PGD at 0.2 from fgsm and pgd3 (same settings, 32 >= 24 images), the
  # APGD-CE point from the suite's first member.
  sweep = report['models']['candidate']['sweep']
  assert sweep['taken_from'] == {'fgsm eps=0.2': 'fgsm', 'pgd eps=0.2': 'pgd3',
                                 'apgd-ce eps=0.2': 'autoattack (apgd-ce)'}
  correct = metrics.unpack_mask(cand['pgd3']['correct'], 32)[:24]
  assert sweep['accuracy']['pgd']['0.2'] == pytest.approx(correct.mean())
  assert sweep['seconds']['pgd']['0.2'] == 0.0 and sweep['seconds']['pgd']['0.1'] > 0


def test_same_attack_key_ignores_name_and_sample_size_only():
  key = evaluation_lib.same_attack_key
  pgd = AttackConfig('a', epsilon=0.2, steps=3, step_size=0.1, random_start=True)
  assert key(pgd) == key(dataclasses.replace(pgd, name='b', sample_size=5))
  for change in (dict(epsilon=0.3), dict(steps=4), dict(step_size=0.05),
                 dict(random_start=False), dict(restarts=2), dict(norm='l2')):
    assert key(pgd) != key(dataclasses.replace(pgd, **change)), change
  apgd = AttackConfig('x', method='apgd-ce', epsilon=0.2, steps=100)
  assert key(apgd) != key(dataclasses.replace(apgd, method='pgd'))
  assert key(dataclasses.replace(apgd, method='apgd-t')) is None
  assert key(dataclasses.replace(apgd, method='autoattack')) is None


def test_square_runs_through_the_split_when_the_model_has_one(world, tmp_path):
  """The same suite through the split and through the logits alone: the same worst
  case, and the report says which forward pass Square used. A split that is not the
  model fails the evaluation before any Square figure exists."""
  suite = AttackConfig('autoattack', method='autoattack', epsilon=0.01, steps=3,
                       targets=1, queries=200, sample_size=32, suite=('square',))
  config = dataclasses.replace(
      _config(min_clean_accuracy=0.0), attacks=(suite,), epsilon_sweep=(),
      thresholds=Thresholds(min_clean_accuracy=0.0, max_drop=None, min_eval_examples=1,
                            min_attack_accuracy={'autoattack': 0.0}))
  reports = {}
  for name in ('cnn', 'cnn_unsplit'):
    evaluation, _ = _run(world, tmp_path / name, config, model=world[name],
                         examples=world['cnn_examples'])
    with open(os.path.join(evaluation.uri, spec.METRICS_FILE)) as f:
      reports[name] = json.load(f)['models']['candidate']['attacks']['autoattack']
  assert reports['cnn']['square_forward_pass'] == 'incremental'
  assert reports['cnn']['flipped_by_member']['square'] > 0   # Square had work to do
  assert reports['cnn_unsplit']['square_forward_pass'] == 'full'
  assert reports['cnn']['accuracy'] == pytest.approx(reports['cnn_unsplit']['accuracy'],
                                                     abs=1 / 32)
  with pytest.raises(attacks.SplitMismatchError, match='exported split'):
    _run(world, tmp_path / 'bad', config, model=world['cnn_bad_split'],
         examples=world['cnn_examples'])
  assert os.listdir(tmp_path / 'bad' / 'blessing') == []
