"""Storage: where buckets, object metadata and object bytes live.

The S3 layer talks to two small interfaces (``interfaces.py``): a metadata store and a blob store. The
embedded default pairs SQLite (``sqlite_meta.py``) with plain files in the data directory (``local_blobs.py``);
``engine.py`` wires a pair together and owns what spans both (garbage collection, orphan sweeping).
"""
