"""The data path every backup and restore goes through: source -> zstd -> AES-256-GCM
envelope -> store, objects first and manifest last; and back again for restores."""
