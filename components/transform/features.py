"""Feature names and shapes shared by ingestion, Transform, Trainer and Evaluator.

Raw tf.Examples (from MnistExampleGen): ``image`` is 784 int64 pixels 0-255 in
row-major 28x28 order, ``label`` one int64. Transformed examples: ``image_xf`` is 784
float32 pixels in [0, 1], ``label`` is unchanged.
"""
IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_XF_KEY = 'image_xf'
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10
MAX_PIXEL = 255.0
