"""Training on top of a loaded model: task heads (a logistic-regression classifier over a model's pooled hidden
states: features, head, and run, which trains one for a task from labelled rows and makes it a voter)."""


class HeadError(ValueError):
    """Training data, options or a saved head that cannot be used, with a message a person can act on."""
