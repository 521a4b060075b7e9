"""What TFX costs on top of the work: the full pipeline against the same training and
evaluation done directly (numpy + the same Keras/attack code), in one process.

    MNIST_DIR=../shared/data/mnist python bench/pipeline_overhead.py [--epochs 5]

Both sides train the adversarial and the base model with the same config and run the
evaluator's white-box and transfer attacks on the same examples. The pipeline side
adds Beam ingestion, TFDV statistics/validation, tf.Transform, SavedModel export and
reload, ml-metadata and the push. Last line: one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline import progress  # pylint: disable=g-import-not-at-top

progress.quiet_environment()

# pylint: disable=g-import-not-at-top,wrong-import-position
from components.mnist_example_gen import idx
from pipeline import config as config_lib
from pipeline import local_runner


def direct(cfg: config_lib.PipelineConfig, data_dir: str) -> float:
  """Same training + evaluation as the pipeline, without TFX. Returns seconds."""
  import tf_keras as keras
  from components.robustness_evaluator import attacks as attacks_lib
  from components.robustness_evaluator import executor as ev
  from components.trainer import data
  from components.trainer import training

  start = time.perf_counter()
  images, labels = idx.load_split(data_dir, 'train')
  x = images.reshape(len(images), -1).astype('float32') / 255.0
  eval_images, y_eval = idx.load_split(data_dir, 'eval')
  x_eval = eval_images.reshape(len(eval_images), -1).astype('float32') / 255.0
  y, y_eval = labels.astype('int64'), y_eval.astype('int64')

  models = {}
  for role, mode in (('candidate', 'adversarial'), ('base', 'base')):
    keras.utils.set_random_seed(cfg.train.seed)
    ds = data.training_dataset(x, y, batch_size=cfg.train.batch_size,
                               seed=cfg.train.seed, shuffle_buffer=cfg.train.shuffle_buffer)
    model = training.compile_model(cfg, mode)
    model.fit(ds, epochs=cfg.train.epochs, verbose=0,
              validation_data=data.evaluation_dataset(x_eval, y_eval,
                                                      batch_size=cfg.eval.batch_size))
    models[role] = model.base

  runs, attackers = {}, {}
  for role, net in models.items():
    loaded = ev.LoadedModel(role=role, uri='(in memory)', artifact_id=-1,
                            logits_fn=lambda t, net=net: net(t, training=False),
                            saved_model=None)
    attackers[role] = attacks_lib.Attacker(loaded.logits_fn,
                                           batch_size=cfg.eval.batch_size,
                                           seed=cfg.eval.seed, name=role)
    runs[role] = ev.evaluate_white_box(loaded, attackers[role], x_eval, y_eval, cfg.eval)
  ev.evaluate_transfer(runs['base'], {'candidate': attackers['candidate']}, y_eval, 10)
  return time.perf_counter() - start


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  p.add_argument('--epochs', type=int, default=config_lib.TrainConfig().epochs)
  args = p.parse_args()
  if not args.data_dir:
    sys.exit('error: set MNIST_DIR or pass --data-dir')

  # Imports are paid once per process by both sides; keep them out of the timings.
  import tfx.v1  # pylint: disable=unused-import
  import components.trainer.training  # pylint: disable=unused-import
  import components.robustness_evaluator.executor  # pylint: disable=unused-import

  with tempfile.TemporaryDirectory() as root:
    cfg = config_lib.PipelineConfig(
        pipeline_root=os.path.join(root, 'pipeline'),
        serving_dir=os.path.join(root, 'serving'), enable_cache=False,
    ).replace(**{'train.epochs': args.epochs})
    timer = progress.install()
    t = time.perf_counter()
    report = local_runner.run(cfg, args.data_dir, timer=timer)
    pipeline_s = time.perf_counter() - t

  direct_s = direct(cfg, args.data_dir)
  per_component = {node: round(s, 1) for node, s in timer.timings}
  work = {'Trainer', 'BaseTrainer', 'RobustnessEvaluator'}
  result = {
      'pipeline_s': round(pipeline_s, 1),
      'direct_s': round(direct_s, 1),
      'overhead_ratio': round(pipeline_s / direct_s, 3),
      'epochs': args.epochs,
      'component_s': per_component,
      'non_training_component_s': round(sum(
          s for n, s in per_component.items() if n not in work), 1),
      'blessed': report.get('blessed'),
  }
  print(f'pipeline {pipeline_s:.1f} s, direct {direct_s:.1f} s, '
        f'overhead x{result["overhead_ratio"]:.2f}')
  for node, s in per_component.items():
    print(f'  {node:<32}{s:7.1f} s')
  print(json.dumps(result))


if __name__ == '__main__':
  main()
