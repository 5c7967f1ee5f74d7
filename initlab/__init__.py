"""initlab: a laboratory for weight initialization in neural networks.

From Python (a notebook, a script)::

    import initlab

    s = initlab.study(inits=["xavier", "kaiming"], seeds=2, train_size=2000)
    s.runs                      # a pandas DataFrame, one row per run
    s.plot_curves()             # a matplotlib Figure

The names below live in :mod:`initlab.api` and are imported from there on first use, so that
``import initlab`` -- which every worker process does -- stays as light as the module it needs.
"""

__version__ = "0.1.0"

__all__ = ["initialize", "register_init", "build_model", "init_names", "model_names", "study", "probe",
           "transfer", "load", "Study", "Probe", "Transfer"]


def __getattr__(name: str):
    if name in __all__:
        from initlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
