"""The TensorFlow eager code that runs unchanged on accel and on TensorFlow.

Each class takes the module to run on (`import accel as tf` or `import tensorflow as tf`).
"""

import math

from . import BETA1, BETA2, EPS, ENC_HEADS, LN_EPS, LR, chain


def device_name(device):
    return "/GPU:0" if device == "gpu" else "/CPU:0"


class TrainStep:
    """One training step: loss(), its gradient for every Variable, Keras Adam; compiled=True wraps it in
    tf.function (accel.function on accel). Subclasses define loss()."""

    def __init__(self, tf, params, x, y, device, compiled=False, jit_compile=None):
        self.tf = tf
        self.device = device_name(device)
        with tf.device(self.device):
            self.vars = [tf.Variable(p) for p in params]
            self.x = tf.constant(x)
            self.y = tf.constant(y)
            self.opt = tf.keras.optimizers.Adam(learning_rate=LR, beta_1=BETA1, beta_2=BETA2, epsilon=EPS)
            if compiled:
                self.opt.build(self.vars)  # creates the slot variables outside the traced function
        self._step = tf.function(self._train_step, jit_compile=jit_compile) if compiled else self._train_step

    def _train_step(self):
        with self.tf.GradientTape() as tape:
            loss = self.loss()
        grads = tape.gradient(loss, self.vars)
        self.opt.apply_gradients(zip(grads, self.vars, strict=True))
        return loss

    def _xent(self, logits):
        tf = self.tf
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.y, logits=logits))

    def __call__(self):
        with self.tf.device(self.device):
            return float(self._step())

    def params(self):
        return [v.numpy() for v in self.vars]


class MLPStep(TrainStep):
    def loss(self):
        tf = self.tf
        h = self.x
        n_layers = len(self.vars) // 2
        for i in range(n_layers):
            h = tf.matmul(h, self.vars[2 * i]) + self.vars[2 * i + 1]
            if i < n_layers - 1:
                h = tf.nn.relu(h)
        return self._xent(h)


class CNNStep(TrainStep):
    """bench.workloads' small CNN (NHWC)."""

    def loss(self):
        tf = self.tf
        k1, b1, k2, b2, w, b = self.vars
        h = tf.nn.relu(tf.nn.conv2d(self.x, k1, strides=1, padding="VALID") + b1)
        h = tf.nn.relu(tf.nn.conv2d(h, k2, strides=1, padding="VALID") + b2)
        h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
        h = tf.reshape(h, [-1, w.shape[0]])
        return self._xent(tf.matmul(h, w) + b)


def layer_norm(tf, x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + LN_EPS) * gamma + beta


class EncoderStep(TrainStep):
    """bench.workloads' transformer encoder block (pre-LN) with a mean-pooled classification head."""

    def loss(self):
        tf = self.tf
        g1, be1, w_qkv, b_qkv, w_o, b_o, g2, be2, w1, b1, w2, b2, w_head, b_head = self.vars
        batch, seq, d = self.x.shape
        heads, dh = ENC_HEADS, d // ENC_HEADS

        def split_heads(t):  # (batch*seq, d) -> (batch, heads, seq, dh)
            return tf.transpose(tf.reshape(t, [batch, seq, heads, dh]), [0, 2, 1, 3])

        x = tf.reshape(self.x, [batch * seq, d])
        qkv = tf.matmul(layer_norm(tf, x, g1, be1), w_qkv) + b_qkv
        q, k, v = (split_heads(qkv[:, i * d:(i + 1) * d]) for i in range(3))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(dh))
        ctx = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * seq, d])
        h = x + tf.matmul(ctx, w_o) + b_o
        m = tf.nn.gelu(tf.matmul(layer_norm(tf, h, g2, be2), w1) + b1, approximate=False)
        h = h + tf.matmul(m, w2) + b2
        pooled = tf.reduce_mean(tf.reshape(h, [batch, seq, d]), axis=1)
        return self._xent(tf.matmul(pooled, w_head) + b_head)


class Chain:
    def __init__(self, tf, x0, n_ops, device, compiled=False, jit_compile=None):
        self.tf = tf
        self.device = device_name(device)
        self.n_ops = n_ops
        with tf.device(self.device):
            self.x = tf.Variable(x0)
        self._grad = tf.function(self._gradient, jit_compile=jit_compile) if compiled else self._gradient

    def _gradient(self):
        tf = self.tf
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(chain(self.x, self.n_ops, tf.tanh))
        return tape.gradient(loss, self.x)

    def __call__(self):
        with self.tf.device(self.device):
            return self._grad().numpy()


def recorder(tf, x0, device):
    """record(n_ops) runs the chain under a GradientTape and returns the backward pass as a thunk."""
    with tf.device(device_name(device)):
        x = tf.Variable(x0)

    def record(n_ops):
        with tf.device(device_name(device)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(chain(x, n_ops, tf.tanh))
        return lambda: tape.gradient(loss, x)

    return record
