"""`gan score` (not built yet)."""

from gancli.cli._io import user_errors
from gancli.errors import GancliError


@user_errors("score")
def score():
    """Not built yet: exits 1."""
    raise GancliError("gan score is not built yet", "see the README's roadmap")
