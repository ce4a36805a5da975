"""The app's own rooms: what `app.py`'s handlers do, tested without a browser.

The library (`cxrcap.*`) never imports this package; this package uses the library.
"""
