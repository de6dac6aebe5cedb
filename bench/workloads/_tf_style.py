"""The TensorFlow eager code that runs unchanged on accel and on TensorFlow.

Each class takes the module to run on (`import accel as tf` or `import tensorflow as tf`).
"""

from . import BETA1, BETA2, EPS, LR, chain


def device_name(device):
    return "/GPU:0" if device == "gpu" else "/CPU:0"


class MLPStep:
    def __init__(self, tf, params, x, y, device, compiled=False):
        self.tf = tf
        self.device = device_name(device)
        with tf.device(self.device):
            self.vars = [tf.Variable(p) for p in params]
            self.x = tf.constant(x)
            self.y = tf.constant(y)
            self.opt = tf.keras.optimizers.Adam(learning_rate=LR, beta_1=BETA1, beta_2=BETA2, epsilon=EPS)
            if compiled:
                self.opt.build(self.vars)  # creates the slot variables outside the traced function
        self._step = tf.function(self._train_step) if compiled else self._train_step

    def _train_step(self):
        tf = self.tf
        with tf.GradientTape() as tape:
            h = self.x
            n_layers = len(self.vars) // 2
            for i in range(n_layers):
                h = tf.matmul(h, self.vars[2 * i]) + self.vars[2 * i + 1]
                if i < n_layers - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.y, logits=h))
        grads = tape.gradient(loss, self.vars)
        self.opt.apply_gradients(zip(grads, self.vars, strict=True))
        return loss

    def __call__(self):
        with self.tf.device(self.device):
            return float(self._step())

    def params(self):
        return [v.numpy() for v in self.vars]


class Chain:
    def __init__(self, tf, x0, n_ops, device, compiled=False):
        self.tf = tf
        self.device = device_name(device)
        self.n_ops = n_ops
        with tf.device(self.device):
            self.x = tf.Variable(x0)
        self._grad = tf.function(self._gradient) if compiled else self._gradient

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
