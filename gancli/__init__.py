"""gancli: train GANs on MNIST-like images and evaluate them, from the shell or from Python.

    import gancli
    run = gancli.train("fgan", div="js", epochs=6)
    samples = gancli.sample(run, n=10000, reject=0.6)
    print(gancli.score(samples, reference="mnist:test"))

The functions live in gancli.api (docs/api.md); they are imported on first use, so that
`import gancli` (and `gan --help`) stays free of torch.
"""

from gancli._version import __version__

__all__ = ["GancliError", "__version__", "calibrate", "export", "filter", "interpolate", "resume", "sample", "score", "train"]
_API = {"calibrate", "export", "filter", "interpolate", "resume", "sample", "score", "train"}


def __getattr__(name: str):
    if name in _API:
        from gancli import api

        return getattr(api, name)
    if name == "GancliError":
        from gancli.errors import GancliError

        return GancliError
    raise AttributeError(f"module 'gancli' has no attribute {name!r}")
