"""``python -m chatcell_operator``: the same as the ``chatcell-operator`` console script."""

from chatcell_operator.main import run

run()
