"""One module per family of S3 operations; each exposes ``HANDLERS``: operation name -> coroutine."""

from shoal.http.handlers import buckets, defaults, encryption, multipart, objects, tagging, versioning

HANDLERS = {
    **defaults.HANDLERS,
    **buckets.HANDLERS,
    **objects.HANDLERS,
    **multipart.HANDLERS,
    **versioning.HANDLERS,
    **tagging.HANDLERS,
    **encryption.HANDLERS,
}
