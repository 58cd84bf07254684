"""The engine of ``student_backprop.py`` with one planted bug: sigmoid'' written as ``s (1 - s)^2`` instead of
``s (1 - s) (1 - 2 s)``, a slip easy to make when deriving it by hand. First derivatives are untouched, so only
``hvp`` on networks with a sigmoid layer goes wrong; the check must name it. Check it with::

    python -m xval check examples/engines/planted_bug.py
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "student_backprop", pathlib.Path(__file__).with_name("student_backprop.py")
)
_student = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_student)

_sigmoid = _student._sigmoid
_student.ACTIVATIONS["sigmoid"] = (
    _sigmoid,
    lambda x: _sigmoid(x) * _sigmoid(-x),
    lambda x: _sigmoid(x) * _sigmoid(-x) ** 2,  # the bug: (1 - s)^2 where (1 - 2 s) belongs
)

forward, loss, gradient, per_sample_gradients, hvp = (
    _student.forward,
    _student.loss,
    _student.gradient,
    _student.per_sample_gradients,
    _student.hvp,
)
