"""`gan sample` (not built yet)."""

from gancli.cli._io import user_errors
from gancli.errors import GancliError


@user_errors("sample")
def sample():
    """Not built yet: exits 1."""
    raise GancliError("gan sample is not built yet", "see the README's roadmap")


@user_errors("interpolate")
def interpolate():
    """Not built yet: exits 1."""
    raise GancliError("gan interpolate is not built yet", "see the README's roadmap")
