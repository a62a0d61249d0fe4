"""Running a fleet: the local all-in-one fleet (``drfleet up``), the embedded demo plan,
and errors shared by every package."""
