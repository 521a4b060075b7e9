"""The first convolution, with an input gradient that is cheap on CPU.

Adversarial training and every PGD attack need d(loss)/d(pixels). For the first
layer that is Conv2DBackpropInput with a single output channel (grayscale), which
TF's oneDNN kernels run about 3x slower than the whole forward convolution (2.5 ms
of a ~11 ms FGSM step at batch 32 on 2 cores). The same gradient written as
col2im -- one matmul by the transposed kernel, then one shifted add per kernel
tap -- takes ~0.8 ms. The forward pass and the weight gradient are the stock
kernels, so weights, outputs and the gradient values are those of keras Conv2D
(up to float rounding; the model test checks this).
"""
import tensorflow as tf
import tf_keras as keras


def col2im_input_gradient(out_grad: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """d(loss)/d(input) of a stride-1 VALID convolution, from d(loss)/d(output).

  out_grad [N, H-kh+1, W-kw+1, C_out], kernel [kh, kw, C_in, C_out] -> [N, H, W, C_in].
  Each kernel tap (a, b) sends kernel[a, b] @ out_grad^T back to the inputs it read,
  which sit at offset (a, b): a zero pad places it there. The matmul is written
  kernel-first so each tap's result is a contiguous [C_in, N, h, w] block: slicing
  taps out of an interleaved [N, h, w, taps * C_in] layout cost as much as the
  matmul (the whole gradient 1.8x slower at batch 460 on AVX-512, bench/README.md).
  """
  kh, kw, c_in, c_out = kernel.shape
  taps = kh * kw
  flat = tf.reshape(out_grad, [-1, c_out])
  planes = tf.matmul(tf.reshape(kernel, [taps * c_in, c_out]), flat, transpose_b=True)
  shape = tf.shape(out_grad)
  planes = tf.reshape(planes, tf.stack([taps, c_in, shape[0], shape[1], shape[2]]))
  pieces = []
  for t in range(taps):
    a, b = divmod(t, kw)
    pieces.append(tf.pad(planes[t], [[0, 0], [0, 0], [a, kh - 1 - a], [b, kw - 1 - b]]))
  # [C_in, N, H, W] -> NHWC; for grayscale (C_in = 1) TF's transpose is a reshape.
  return tf.transpose(tf.add_n(pieces), [1, 2, 3, 0])


@tf.custom_gradient
def _conv_with_col2im_gradient(inputs, kernel):
  outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding='VALID')

  def grad(out_grad):
    kernel_grad = tf.compat.v1.nn.conv2d_backprop_filter(
        inputs, tf.shape(kernel), out_grad, strides=[1, 1, 1, 1], padding='VALID')
    return col2im_input_gradient(out_grad, kernel), kernel_grad

  return outputs, grad


class InputConv2D(keras.layers.Conv2D):
  """keras Conv2D (stride 1, VALID, NHWC) whose input gradient uses col2im."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if (tuple(self.strides) != (1, 1) or self.padding != 'valid' or
        tuple(self.dilation_rate) != (1, 1) or self.groups != 1 or
        self.data_format != 'channels_last'):
      raise ValueError(f'{self.name}: InputConv2D supports only strides=1, '
                       "padding='valid', no dilation or groups, channels_last")

  def convolution_op(self, inputs, kernel):
    # Read the variable outside the custom-gradient function: the gradient reaches
    # it through the read, and custom_gradient needs no variable bookkeeping.
    return _conv_with_col2im_gradient(inputs, tf.convert_to_tensor(kernel))
