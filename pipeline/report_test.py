"""The report's pure parts: tables and figures from a metrics.json, rendering, the
atomic write of report.json and 'latest'."""
import json
import os

from pipeline import report as report_lib

METRICS = {
    'config': {'sweep_apgd_sample_size': 500},
    'models': {'candidate': {
        'clean': {'accuracy': 0.985, 'num_examples': 10000, 'ci95': [0.982, 0.987]},
        'attacks': {
            'fgsm': {'accuracy': 0.90, 'num_examples': 10000, 'ci95': [0.894, 0.906]},
            'autoattack': {'accuracy': 0.55, 'num_examples': 1000,
                           'ci95': [0.519, 0.581], 'reused_from': '/old'}},
        'sweep': {'sample_size': 1000, 'accuracy': {
            'fgsm': {'0.2': 0.9, '0.3': 0.7}, 'apgd-ce': {'0.2': 0.55, '0.3': 0.2}}}}},
}


def _report(**extra):
  r = {'run_id': 'run-1', 'wall_s': 12.0, 'components': [
      {'node': 'Trainer', 'seconds': 3.0, 'state': 'COMPLETE'}],
       'push': {'pushed': True, 'version': '7', 'path': '/serving/7'},
       'table': report_lib._table(METRICS), 'figures': report_lib._figures(METRICS),
       'curve': report_lib._curve(METRICS), 'blessed': True,
       'checks': [{'name': 'min_attack_accuracy/autoattack', 'value': 0.519,
                   'threshold': 0.45, 'comparison': '>=', 'passed': True,
                   'measure': 'ci95_lower_bound'}]}
  r.update(extra)
  return r


def test_figures_carry_sample_size_interval_and_reuse():
  figures = {f['name']: f for f in report_lib._figures(METRICS)}
  assert figures['clean']['num_examples'] == 10000
  assert figures['autoattack']['ci95'] == [0.519, 0.581] and figures['autoattack']['reused']
  assert not figures['fgsm']['reused']


def test_table_without_a_base_model_has_the_white_box_columns():
  table = report_lib._table(METRICS)
  assert table['columns'] == ['clean', 'fgsm white-box', 'autoattack white-box']
  assert table['rows']['adversarial']['autoattack white-box'] == 0.55


def test_render_names_the_trusted_number_its_interval_and_the_lower_bound_gate():
  text = report_lib.render(_report())
  assert 'AutoAttack is the number to trust' in text
  assert 'n=1000' in text and '95% CI [51.9, 58.1]' in text and '(reused)' in text
  assert '(95% lower bound)' in text and 'BLESSED' in text
  assert 'apgd-ce' in text and '0.3' in text          # the eps 0.3 column
  assert 'Pushed: version 7 -> /serving/7' in text


def test_render_says_why_nothing_was_pushed():
  text = report_lib.render(_report(blessed=False, push={
      'pushed': False, 'reason': 'the model was not blessed: failed x'}))
  assert 'NOT BLESSED' in text and 'Not pushed: the model was not blessed' in text


def test_write_updates_the_run_and_latest_atomically(tmp_path):
  root = str(tmp_path)
  path = report_lib.write(_report(), root)
  assert path == report_lib.report_path(root, 'run-1')
  for p in (path, report_lib.report_path(root)):
    with open(p) as f:
      assert json.load(f)['run_id'] == 'run-1'
  leftovers = [n for d, _, names in os.walk(root) for n in names if n.startswith('.')]
  assert not leftovers
