"""Errors of point-in-time recovery. Each names the dataset, WAL file, LSN, directory or
backup it concerns; none holds a secret (connection strings are never facts)."""

from drfleet.errors import DrfleetError


class PitrError(DrfleetError):
    pass


class NotAPostgresDataset(PitrError):
    hint = "WAL archiving, base backups and standbys apply to datasets of kind postgres"


class WalPlanUnknown(PitrError):
    hint = ("give the plan and dataset: `drfleet wal push %p --plan PLAN --dataset NAME`, or set "
            "DRFLEET_PLAN and DRFLEET_WAL_DATASET in the server's environment")


class WalFileUnreadable(PitrError):
    hint = "archive_command gets %p relative to the data directory; check the path and permissions"


class WalConflict(PitrError):
    hint = ("another file was already archived under this name: two clusters are archiving into "
            "one dataset, or the cluster was re-created (initdb) without a new dataset; stop and "
            "give each cluster its own dataset")


class WalNotArchived(PitrError):
    hint = "list what is archived with `drfleet wal check DATASET`"


class WalRecordInvalid(PitrError):
    hint = "the archive is damaged or was written by something else; run `drfleet wal check DATASET`"


class WalGap(PitrError):
    hint = ("segments are missing from the archive: recovery cannot pass the gap. Take a new base "
            "backup (`drfleet wal basebackup DATASET`) so later targets do not need the missing WAL")


class NoBaseBackup(PitrError):
    hint = "take one with `drfleet wal basebackup DATASET` (base backups are listed by `drfleet backups list`)"


class InvalidRecoveryTarget(PitrError):
    hint = "give --at latest, an LSN such as 0/3000060, or a time such as 2026-11-21T03:15:00Z"


class TargetDirNotEmpty(PitrError):
    hint = "restore into a new or empty directory; drfleet never overwrites a data directory"


class ClusterStartFailed(PitrError):
    hint = "read the server log named here; for a recovery target, check it lies between the base backup and the newest archived WAL"


class BaseBackupFailed(PitrError):
    hint = ("check the dataset's connection has the REPLICATION attribute, pg_hba.conf allows "
            "replication connections, and archive_mode is on with a working archive_command")


class StandbyNotFound(PitrError):
    hint = "list standbys with `drfleet standby list DATASET`, or pass --data-dir"


class PromoteFailed(PitrError):
    hint = "read the server log named here; the standby stays in recovery until promotion succeeds"


class OplogError(PitrError):
    hint = "check the oplog slices with `drfleet backups list DATASET`"


class OplogGap(OplogError):
    hint = ("the oplog rolled over between two slices (entries were lost): take a new full dump; "
            "restores can reach only times covered by an unbroken chain of slices after a dump")


class DeltaTargetRefused(PitrError):
    hint = ("a delta restore writes into the data directory of the same cluster (same system "
            "identifier), stopped; stop the server (`pg_ctl stop -D DIR`) or restore into an empty directory")


class NotAStandby(PitrError):
    hint = ("a backup from a standby reads the files of a server in recovery that replicates from the "
            "dataset's primary; point --standby at such a server (pg_is_in_recovery() is true there)")


class PhysicalBackupRefused(PitrError):
    hint = ("a file-level base backup runs on the database host: the worker must read the data "
            "directory, and the server must be PostgreSQL 15 or later with archive_mode on")
