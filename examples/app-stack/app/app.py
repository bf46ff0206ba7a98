"""A tiny web app storing uploads in Shoal through the standard AWS environment (AWS_ENDPOINT_URL, ...)."""

import json
import os
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

s3 = boto3.client("s3")  # endpoint, keys and region come from the environment
UPLOADS = os.environ["UPLOAD_BUCKET"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        listing = s3.list_objects_v2(Bucket=UPLOADS, MaxKeys=20).get("Contents", [])
        body = json.dumps([{"key": o["Key"], "size": o["Size"]} for o in listing]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = f"files/{uuid.uuid4()}"
        s3.put_object(Bucket=UPLOADS, Key=key, Body=data,
                      ContentType=self.headers.get("Content-Type", "application/octet-stream"))
        url = s3.generate_presigned_url("get_object", Params={"Bucket": UPLOADS, "Key": key}, ExpiresIn=3600)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"key": key, "url": url}).encode())


ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
