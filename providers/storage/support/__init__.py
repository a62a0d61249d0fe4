"""What store backends share that is not a backend: the S3 multipart writer."""
