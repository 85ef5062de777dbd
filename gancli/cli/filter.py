"""`gan filter` (not built yet)."""

from gancli.cli._io import user_errors
from gancli.errors import GancliError


@user_errors("filter")
def filter_images():
    """Not built yet: exits 1."""
    raise GancliError("gan filter is not built yet", "see the README's roadmap")
