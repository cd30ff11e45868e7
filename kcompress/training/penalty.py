"""The shared "extra loss term" mechanism: train on task loss + Σ penalty terms.

Several methods train a model on its task loss plus a term whose coefficients and targets
change *between* epochs or steps, without rebuilding or recompiling the model:

- LC's L-step: μ/2 · ‖w − Δ(Θ) − λ/μ‖² (targets change after every C-step, μ per step);
- the pruner's μ·λ·L_pru (λ and μ follow a schedule over epochs).

A :class:`PenaltyTerm` reads tf.Variables (coefficients, targets) that Python code assigns
whenever it likes; :class:`PenalizedModel` wraps an unchanged Keras model and adds the
terms in ``train_step``, logging each term's mean under its name. The inner model is what
gets saved: the wrapper never reaches a file. Coefficients move between epochs through Keras
callbacks (e.g. the pruner's :class:`~kcompress.methods.pruner.schedule.PrunerCallback`).
"""
import numpy as np

from kcompress.backend import keras, tf


class PenaltyTerm:
    """A scalar loss term over model variables; subclasses implement :meth:`__call__`."""

    name = "penalty"

    def __call__(self):
        raise NotImplementedError


class QuadraticPenalty(PenaltyTerm):
    """``μ/2 · Σ ‖w − t‖²`` over ``variables`` with targets ``t`` and ``μ`` held in tf.Variables.

    Assign new targets with :meth:`set_targets` and a new μ with :meth:`set_mu`: the compiled
    training step sees them at once. Its gradient w.r.t. w is ``μ (w − t)``.
    """

    def __init__(self, variables, mu=0.0, name="penalty"):
        self.name = name
        self.variables = list(variables)
        self.mu = tf.Variable(float(mu), trainable=False, dtype=tf.float32, name=f"{name}_mu")
        self.targets = [
            tf.Variable(tf.zeros_like(v), trainable=False, name=f"{name}_target_{i}")
            for i, v in enumerate(self.variables)
        ]

    def set_targets(self, arrays):
        for t, a in zip(self.targets, arrays, strict=True):
            t.assign(np.asarray(a, dtype=np.float32).reshape(t.shape))

    def set_mu(self, mu):
        self.mu.assign(float(mu))

    def __call__(self):
        sq = tf.add_n([tf.reduce_sum(tf.square(v - t)) for v, t in zip(self.variables, self.targets)])
        return 0.5 * self.mu * sq


class PenalizedModel(keras.Model):
    """Wraps ``inner`` so that training minimises task loss + the sum of ``terms``.

    Logs ``loss`` (the task loss, as Keras computes it), one entry per term, and
    ``total_loss``. Evaluation reports the task loss and metrics only.
    """

    def __init__(self, inner, terms, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.terms = list(terms)
        self.term_trackers = [keras.metrics.Mean(name=t.name) for t in self.terms]
        self.total_tracker = keras.metrics.Mean(name="total_loss")

    def call(self, x, training=None):
        return self.inner(x, training=training)

    @property
    def metrics(self):
        return super().metrics + self.term_trackers + [self.total_tracker]

    def penalty_values(self):
        """The current value of every term (a list of scalar tensors)."""
        return [term() for term in self.terms]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            task_loss = self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
            extras = self.penalty_values()
            total = task_loss + tf.add_n(extras) if extras else task_loss
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        for tracker, value in zip(self.term_trackers, extras):
            tracker.update_state(value)
        self.total_tracker.update_state(total)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        return {m.name: m.result() for m in super().metrics}
