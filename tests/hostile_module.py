"""A module that must never be imported by loading a model file.

Importing it writes a marker file (when ``SKLEARN_MACH_HOSTILE_MARKER``
names one), and its callables create directories: the persistence tests
check that neither happens.
"""

import os

from torch import nn

_marker = os.environ.get("SKLEARN_MACH_HOSTILE_MARKER")
if _marker:
    with open(_marker, "w") as f:
        f.write("imported")


class Net(nn.Module):
    def __init__(self, n_features, n_outputs, name=None):
        super().__init__()
        if name:
            os.makedirs(name)
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.linear(X)


def make_dir(name, **kwargs):
    os.makedirs(name)
