"""Type aliases of the public signatures (the docstrings say what each value means)."""

from typing import Literal, Sequence, Tuple, Union

from numpy.typing import ArrayLike

__all__ = ["ArrayLike", "Size", "IntOrTuple", "Padding", "Backend"]

#: A spatial size: an int (1-D) or one int per spatial axis.
Size = Union[int, Sequence[int]]
#: A hyper-parameter: the same int on every axis, or one per axis.
IntOrTuple = Union[int, Sequence[int]]
#: An int, one int or ``(begin, end)`` pair per axis, ``"valid"`` or ``"same"``.
Padding = Union[int, str, Sequence[Union[int, Tuple[int, int]]]]
Backend = Literal["auto", "direct", "sparse"]
