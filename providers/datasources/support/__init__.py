"""What the data source kinds share and are not a kind themselves: producers (a tool or thread
streaming a dump), tool discovery, credential scrubbing, spools, the files index and tar
extraction, the Redis replication protocol and MongoDB's pymongo logical dump."""
