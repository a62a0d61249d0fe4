"""The drfleet backup format (specified in docs/format.md).

    layout     where backups live in a store, and which names are allowed
    keyring    per-category master keys and their 0600 keyring files
    datakey    per-backup data keys, wrapped under master keys
    envelope   the chunked AES-256-GCM (STREAM) envelope of every stored object
    manifest   the signed JSON document that describes and commits a backup
    errors     everything above raises, all ``fleet.errors.DrfleetError``

Submodules are imported explicitly (``from drfleet.backup_format.envelope import ...``).
"""
