"""ExampleValidator executor that fails the execution on any anomaly.

The stock executor only records anomalies (a ``blessed`` property per split) and
lets the pipeline go on; nothing downstream in TFX 1.16 reads that property, so a
bad span would be trained on. Failing here stops the run before Transform and
Trainer, with the anomalies named in the error.
"""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.example_validator import executor as stock
from tfx.components.example_validator import labels

from components.strict_example_validator import anomalies as anomalies_lib


class Executor(stock.Executor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]):
    self._found = {}
    result = super().Do(input_dict, output_dict, exec_properties)
    if self._found:
      raise anomalies_lib.DataAnomalyError(self._found)
    return result

  def _Validate(self, inputs, outputs):
    anomalies = super()._Validate(inputs, outputs)
    described = anomalies_lib.describe(anomalies)
    if described:
      # The split is only known through its output folder, 'Split-<name>'.
      split_dir = os.path.basename(str(outputs[labels.SCHEMA_DIFF_PATH]).rstrip('/'))
      self._found[split_dir.replace('Split-', '', 1)] = described
    return anomalies
