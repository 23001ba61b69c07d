"""ZooKeeper layer of cluster mode: paths and codecs (pure), client and store."""
