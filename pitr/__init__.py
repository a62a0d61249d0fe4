"""Point-in-time recovery: WAL archive, base backups, recovery, standbys, MongoDB oplog (issue 5)."""
