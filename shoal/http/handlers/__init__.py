"""One module per family of S3 operations; each exposes ``HANDLERS``: operation name -> coroutine."""

from shoal.http.handlers import (
    access,
    buckets,
    cors,
    defaults,
    encryption,
    lifecycle,
    multipart,
    object_lock,
    objects,
    post_object,
    tagging,
    versioning,
)

HANDLERS = {
    **defaults.HANDLERS,
    **buckets.HANDLERS,
    **objects.HANDLERS,
    **post_object.HANDLERS,
    **multipart.HANDLERS,
    **versioning.HANDLERS,
    **tagging.HANDLERS,
    **access.HANDLERS,
    **lifecycle.HANDLERS,
    **object_lock.HANDLERS,
    **cors.HANDLERS,
    **encryption.HANDLERS,
}
