"""Where a policy's copies go, as location kinds, and how they resolve to stores.

Kinds: ``home-region`` (the dataset's own region), ``region-only`` (the home region, and
the dataset may never leave it), ``primary-region``, ``all-regions``, ``offsite`` (the plan's
default offsite locations), ``offsite-all`` (every offsite location: "several offsite
locations"), ``offsite-cold`` (default offsite locations, written with their cold storage
class). ``offsite:NAME`` and ``offsite-cold:NAME`` name one offsite location.
"""

from __future__ import annotations

from dataclasses import dataclass

COPY_KINDS = ("home-region", "region-only", "primary-region", "all-regions",
              "offsite", "offsite-all", "offsite-cold")
_ALIASES = {
    "primary": "primary-region", "primary region": "primary-region",
    "all regions": "all-regions", "all": "all-regions",
    "home": "home-region", "home region": "home-region", "region": "home-region",
    "region-specific": "home-region", "region specific": "home-region",
    "region only": "region-only", "region-specific only": "region-only",
    "encrypted offsite": "offsite", "offsite cold": "offsite-cold", "cold": "offsite-cold",
    "cold storage": "offsite-cold", "offsite (multiple locations)": "offsite-all",
    "multiple offsite": "offsite-all",
}


@dataclass(frozen=True)
class CopyTarget:
    kind: str
    location: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.location}" if self.location else self.kind

    @property
    def offsite(self) -> bool:
        return self.kind.startswith("offsite")

    @property
    def cold(self) -> bool:
        return self.kind == "offsite-cold"


def parse_copy_target(text: str) -> CopyTarget:
    """Parse one copy target; raises ValueError listing the accepted kinds."""
    if not isinstance(text, str):
        raise ValueError(f"copy target must be a string such as 'all-regions', got {type(text).__name__}")
    low = " ".join(text.strip().lower().split())
    low = _ALIASES.get(low, low)
    kind, _, location = low.partition(":")
    kind = _ALIASES.get(kind, kind)
    if kind not in COPY_KINDS:
        raise ValueError(f"unknown copy target {text!r}; use one of {', '.join(COPY_KINDS)}, "
                         "or 'offsite:NAME' for one offsite location")
    if location and kind not in ("offsite", "offsite-cold"):
        raise ValueError(f"copy target {text!r}: only offsite and offsite-cold take a location name")
    return CopyTarget(kind, location.strip() or None)
