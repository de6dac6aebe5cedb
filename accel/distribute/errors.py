"""The errors accel.distribute raises for misuse (each says what differs and where)."""


class DistributeError(RuntimeError):
    """Base class of accel.distribute's errors."""


class CollectiveMismatchError(DistributeError):
    """Replicas called different collectives, or one replica called a collective the others skipped."""


class ReplicaMismatchError(DistributeError, ValueError):
    """A value that must be identical on every replica (a variable's shape or dtype, a gradient layout) is not."""
