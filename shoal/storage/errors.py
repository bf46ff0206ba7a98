"""Conditions the storage layer reports; the S3 layer maps them to S3 error codes."""


class StorageError(Exception):
    pass


class BucketNotEmptyError(StorageError):
    pass


class NoSuchUploadError(StorageError):
    pass


class PreconditionError(StorageError):
    """A conditional write (If-Match / If-None-Match) found the key in another state."""

    def __init__(self, condition: str, *, absent: bool = False) -> None:
        super().__init__(condition)
        self.condition = condition
        self.absent = absent  # If-Match found no object at all


class CorruptBlobError(StorageError):
    """A stored blob's bytes do not match the checksum recorded when it was written."""

    def __init__(self, blob_id: str, expected: str, actual: str, size: int | None = None) -> None:
        super().__init__(f"blob {blob_id}: CRC64NVME {actual} != recorded {expected}")
        self.blob_id = blob_id
        self.expected = expected
        self.actual = actual
        self.size = size
