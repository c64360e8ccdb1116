-- POST a 4 KiB body (the echo app sends it back). wrk adds Content-Length.
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
