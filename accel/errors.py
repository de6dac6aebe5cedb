"""TensorFlow's exception classes, so `except tf.errors.InvalidArgumentError` ports unchanged.

InvalidArgumentError also subclasses ValueError, so plain Python code that catches
ValueError for bad arguments keeps working.
"""


class OpError(Exception):
    def __init__(self, node_def=None, op=None, message=None, *args):
        if message is None and node_def is not None and op is None:
            message, node_def = node_def, None
        super().__init__(message)
        self.message = message
        self.op = op
        self.node_def = node_def

    def __str__(self):
        return str(self.message)


class InvalidArgumentError(OpError, ValueError):
    pass


class OutOfRangeError(OpError, IndexError):
    pass


class NotFoundError(OpError, LookupError):
    pass


class FailedPreconditionError(OpError, RuntimeError):
    pass


class UnimplementedError(OpError, NotImplementedError):
    pass


class InternalError(OpError, RuntimeError):
    pass


class ResourceExhaustedError(OpError, MemoryError):
    pass


class DataLossError(OpError, IOError):
    pass
