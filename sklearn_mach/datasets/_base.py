"""Where datasets live on this machine."""

import os
from pathlib import Path

from sklearn.utils._param_validation import validate_params

#: Environment variable that sets the data folder, as ``SCIKIT_LEARN_DATA``
#: does for scikit-learn.
DATA_HOME_VARIABLE = "SKLEARN_MACH_DATA"


@validate_params(
    {"data_home": [str, os.PathLike, None]},
    prefer_skip_nested_validation=True,
)
def get_data_home(data_home=None):
    """Return the folder that holds the datasets of sklearn-mach, creating it.

    The examples read their datasets from sub-folders of this folder
    (``get_data_home() / "bibtex"`` holds ``X_train.npz``, ``Y_train.npz``,
    ``X_test.npz`` and ``Y_test.npz``).  It is, in order of precedence:

    1. ``data_home``, if given;
    2. the ``SKLEARN_MACH_DATA`` environment variable, if set and not empty;
    3. ``~/sklearn_mach_data``.

    A leading ``~`` is expanded to the user's home folder.  As
    :func:`sklearn.datasets.get_data_home` does, the folder is created if it
    does not exist yet (it starts empty: nothing is downloaded).

    Parameters
    ----------
    data_home : str or path-like, default=None
        The data folder.  ``None`` takes ``$SKLEARN_MACH_DATA``, else
        ``~/sklearn_mach_data``.

    Returns
    -------
    data_home : pathlib.Path
        The path of the data folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_mach.datasets import get_data_home
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     home = get_data_home(Path(tmp) / "xc")
    ...     print(home.name, home.is_dir())
    xc True
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_VARIABLE) or os.path.join(
            "~", "sklearn_mach_data"
        )
    # os.path's: pathlib raises RuntimeError for an unknown ~user, which
    # os.path (and so scikit-learn) leaves as it is
    path = Path(os.path.expanduser(os.fspath(data_home)))
    path.mkdir(parents=True, exist_ok=True)
    return path
