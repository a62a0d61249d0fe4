"""Task definitions. Every task is a ``workers.taskbase.FleetTask``; messages carry names
and ids only (dataset, policy, region, slot, backup id), never secrets or payloads."""
