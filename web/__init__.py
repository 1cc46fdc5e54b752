"""The static in-browser site: `python -m web build` writes it, `python -m web serve` serves it."""
