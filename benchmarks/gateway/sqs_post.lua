-- A raw SQS-style SendMessage (JSON protocol), as an AWS SDK sends it.
wrk.method = "POST"
wrk.body = '{"QueueUrl": "http://127.0.0.1/000000000000/bench", "MessageBody": "hello"}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "AmazonSQS.SendMessage"
