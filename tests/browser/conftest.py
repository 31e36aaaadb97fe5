"""Browser-test fixtures (see web_pages.py)."""

from web_pages import browser, steps, web_host

__all__ = ["browser", "steps", "web_host"]
