"""In-process HTTP servers that follow each VPS provider's documented API (see base.py)."""
