"""The SavedModel contract between the Trainer's export and its consumers (the
robustness evaluator, serving clients): signature names and their input and output
keys, written once. A leaf: no TensorFlow, nothing from the project but features.
"""
from components.transform import features

# serialized raw tf.Examples -> tf.Transform graph -> softmax.
SERVING_DEFAULT = 'serving_default'
EXAMPLES_INPUT = 'examples'
# uint8 [N, 28, 28] raw pixels -> the same graph -> softmax.
SERVING_IMAGES = 'serving_images'
IMAGES_INPUT = 'images'
PROBABILITIES = 'probabilities'
# float32 [N, 784] normalized pixels in [0, 1] -> logits: what the evaluator
# differentiates through.
NORMALIZED_LOGITS = 'normalized_logits'
NORMALIZED_INPUT = features.IMAGE_XF_KEY
LOGITS = 'logits'

# The classifier split for the Square attack's incremental forward pass
# (components/adversarial/local_forward.py); optional: without them attacks run the
# full pass. float32 [N, h, w, 1] pixel patch -> float32 [N, h', w', C] features.
LOCAL_FEATURES = 'local_features'
PATCH_INPUT = 'image_patch'
FEATURES = 'features'
# float32 [N, F, F, C] features of whole images -> float32 logits.
FEATURES_LOGITS = 'features_logits'
# No input -> int32 scalars: pixels between features, pixels one feature reads.
LOCAL_GEOMETRY = 'local_geometry'
STRIDE = 'stride'
RECEPTIVE_FIELD = 'receptive_field'
