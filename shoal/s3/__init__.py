"""S3 semantics: buckets, objects, listings, multipart uploads. No HTTP here: the front end parses requests
into calls on :class:`shoal.s3.service.S3Service` and renders what comes back."""
