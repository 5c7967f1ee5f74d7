"""initlab: a laboratory for weight initialization in neural networks.

From Python (a notebook, a script)::

    import initlab

    s = initlab.study(inits=["xavier", "kaiming"], seeds=2, train_size=2000)
    s.runs                      # a pandas DataFrame, one row per run
    s.plot_curves()             # a matplotlib Figure

The names in ``__all__`` live in :mod:`initlab.api`, and so does one function per experiment on the
runner (``initlab.depth``, ``initlab.criticality``, ``initlab.width``, ...: made from the experiment
catalog); they, and initlab's modules (``initlab.init``, ``initlab.models``, ...), are imported on first
use, so that ``import initlab`` -- which every worker process does -- stays as light as the module it is
after.
"""
import importlib

__version__ = "0.1.0"

__all__ = ["initialize", "register_init", "build_model", "init_names", "model_names", "study", "probe",
           "transfer", "load", "Study", "Probe", "Transfer", "Result"]


def __getattr__(name: str):
    if name in __all__:
        from initlab import api

        return getattr(api, name)
    try:
        return importlib.import_module(f"{__name__}.{name}")      # initlab.init, initlab.models, ...
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    if not name.startswith("_"):
        from initlab import api

        if name in api.EXPERIMENT_FUNCTIONS:                        # initlab.width, initlab.depth, ...
            return api.EXPERIMENT_FUNCTIONS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    from initlab import api

    return sorted(set(globals()) | set(api.__all__))
