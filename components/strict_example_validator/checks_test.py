"""The data checks' math on arrays (no TFX): each corruption fails its named check."""
import dataclasses
import os

import numpy as np
import pytest

from components.mnist_example_gen import testing
from components.strict_example_validator import checks
from components.strict_example_validator.checks_config import DataChecksConfig

CONFIG = DataChecksConfig()


def _splits(n_train=200, n_eval=100):
  return testing.fake_digits(n_train, 0), testing.fake_digits(n_eval, 1)


def _failed(train, eval_, config=CONFIG):
  summaries = {checks.TRAIN: checks.summarize(*train), checks.EVAL: checks.summarize(*eval_)}
  return [f for f in checks.run_checks(summaries, config) if not f.passed]


def test_generated_mnist_like_data_passes_every_check():
  train, eval_ = _splits()
  summaries = {checks.TRAIN: checks.summarize(*train), checks.EVAL: checks.summarize(*eval_)}
  findings = checks.run_checks(summaries, CONFIG)
  assert sorted({f.check for f in findings}) == [
      'blank_images', 'class_balance', 'inverted_images', 'label_agreement', 'leakage']
  assert all(f.passed for f in findings), [f.message for f in findings if not f.passed]
  [agreement] = [f for f in findings if f.check == 'label_agreement']
  assert agreement.figures['agreed'] == 10


def test_summary_accumulates_batches_like_one_pass():
  images, labels = testing.fake_digits(50)
  whole = checks.summarize(images, labels)
  parts = checks.SplitSummary().add(images[:20], labels[:20]).add(images[20:], labels[20:])
  for field in dataclasses.fields(whole):
    np.testing.assert_array_equal(getattr(whole, field.name), getattr(parts, field.name))


def test_eval_equal_to_train_is_leakage():
  train, _ = _splits()
  eval_ = (train[0][:100].copy(), train[1][:100].copy())
  [leak] = _failed(train, eval_)
  assert leak.check == 'leakage'
  assert leak.message.startswith('leakage: 100 of 100 eval examples (100.0%) are '
                                 'pixel-exact copies of train examples, above 1.0%')
  assert '--max-duplicate-share 0.01' in leak.message
  assert not _failed(train, eval_, dataclasses.replace(CONFIG, max_duplicate_share=1))
  assert not _failed(train, eval_, dataclasses.replace(CONFIG, max_duplicate_share=0))


def test_a_few_copies_stay_below_the_threshold():
  train, (images, labels) = _splits()
  images[0] = train[0][5]
  assert not _failed(train, (images, labels))
  images[1] = train[0][6]   # 2 of 100 = 2% > 1%
  assert [f.check for f in _failed(train, (images, labels))] == ['leakage']


def test_single_class_train_fails_class_balance():
  images, labels = testing.fake_digits(300, 0)
  train = (images[labels == 3], labels[labels == 3])
  _, eval_ = _splits()
  [balance] = _failed(train, eval_)
  assert balance.check == 'class_balance'
  assert 'split train: class(es) 0, 1, 2, 4, 5, 6, 7, 8, 9 absent' in balance.message
  assert '--min-class-share 0.02' in balance.message
  assert not _failed(train, eval_, dataclasses.replace(CONFIG, min_class_share=0))


def test_rare_class_is_named_with_its_share():
  (images, labels), eval_ = _splits(n_train=1000)
  keep = (labels != 4) | (np.cumsum(labels == 4) <= 10)   # class 4: 10 of 910
  [balance] = _failed((images[keep], labels[keep]), eval_)
  assert 'class(es) 4 (1.1%) below 2.0% of 910 examples' in balance.message
  assert not _failed((images[keep], labels[keep]), eval_,
                     dataclasses.replace(CONFIG, min_class_share=0.01))


def test_blank_images_fail():
  (images, labels), eval_ = _splits()
  images[:10] = 0        # 5% all black
  images[10:12] = 255    # and 1% all white
  [blank] = _failed((images, labels), eval_)
  assert blank.check == 'blank_images'
  assert blank.message.startswith('blank_images: split train: 12 of 200 images (6.0%) '
                                  'are blank')
  assert '--max-blank-share 0.01' in blank.message
  assert not _failed((images, labels), eval_, dataclasses.replace(CONFIG, max_blank_share=0.1))


def test_blank_images_are_not_counted_as_leakage():
  (images, labels), (eval_images, eval_labels) = _splits()
  images[:2] = 0
  eval_images[:2] = 0
  assert [f.check for f in _failed((images, labels), (eval_images, eval_labels))] == [
      'blank_images']


def test_inverted_images_fail():
  train, eval_ = _splits()
  inverted = [(255 - im, lb) for im, lb in (train, eval_)]
  failed = _failed(*inverted)
  assert [f.check for f in failed] == ['inverted_images', 'inverted_images']
  assert 'inverted or non-MNIST images: 200 of 200 (100.0%) have a bright border' in (
      failed[1].message)
  assert 'mean intensity 0.8' in failed[1].message
  assert '--max-inverted-share 0.01' in failed[1].message
  assert not _failed(*inverted, dataclasses.replace(CONFIG, max_inverted_share=0))


def test_inverting_one_split_also_breaks_label_agreement():
  train, (images, labels) = _splits()
  assert sorted(f.check for f in _failed(train, (255 - images, labels))) == [
      'inverted_images', 'label_agreement']


def test_shuffled_train_labels_fail_label_agreement():
  (images, labels), eval_ = _splits()
  shuffled = np.random.default_rng(3).permutation(labels)
  [agreement] = _failed((images, shuffled), eval_)
  assert agreement.check == 'label_agreement'
  assert agreement.figures['agreed'] < 5
  assert 'train and eval labels disagree' in agreement.message
  assert '--min-label-agreement 0.9' in agreement.message
  assert not _failed((images, shuffled), eval_,
                     dataclasses.replace(CONFIG, min_label_agreement=0))


def test_two_swapped_classes_fail_label_agreement():
  (images, labels), eval_ = _splits()
  swapped = np.select([labels == 3, labels == 5], [5, 3], labels)
  [agreement] = _failed((images, swapped), eval_)
  assert agreement.figures['agreed'] == 8 and '3->5, 5->3' in agreement.message


def test_permuted_eval_labels_are_named_class_by_class():
  train, (images, labels) = _splits()
  [agreement] = _failed(train, (images, (labels + 1) % 10))
  assert agreement.figures['agreed'] == 0
  assert '0->1, 1->2, 2->3' in agreement.message


def test_drift_verdicts():
  ok = checks.check_drift('train', {'image': 0.01, 'label': 0.0}, 0.1, allow=False)
  assert ok.passed
  high = checks.check_drift('train', {'image': 0.74, 'label': 0.0}, 0.1, allow=False)
  assert not high.passed
  assert ("drift: split train: distribution of 'image' moved by Jensen-Shannon "
          'divergence 0.740 against the previous span, above 0.1') in high.message
  assert '--allow-drift' in high.message and '--max-drift 0.1' in high.message
  allowed = checks.check_drift('train', {'image': 0.74}, 0.1, allow=True)
  assert allowed.passed and 'allowed by --allow-drift' in allowed.message


def test_config_json_round_trip_and_errors():
  config = DataChecksConfig(max_duplicate_share=0.05, allow_drift=True)
  assert DataChecksConfig.from_json(config.to_json()) == config
  assert DataChecksConfig.from_json(None) == DataChecksConfig()
  assert DataChecksConfig.from_json('{"max_blank_share": null}').max_blank_share is None
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['max_dup'\]"):
    DataChecksConfig.from_json('{"max_dup": 0.1}')
  with pytest.raises(ValueError, match='--min-class-share 2: must be a share between 0 and 1'):
    DataChecksConfig(min_class_share=2)
  with pytest.raises(ValueError, match='--allow-drift: must be true or false'):
    DataChecksConfig(allow_drift='yes')


def test_real_mnist_passes():
  d = os.environ.get('MNIST_DIR')
  if not d:
    pytest.skip('MNIST_DIR not set')
  from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top
  splits = {name: idx.load_split(d, name) for name in (checks.TRAIN, checks.EVAL)}
  assert not _failed(splits[checks.TRAIN], splits[checks.EVAL])
