"""The ``drfleet`` command line."""
