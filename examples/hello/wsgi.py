"""The smallest Pier app: answers every request, greets with the GREETING config var, logs each request."""
import os


def application(environ, start_response):
    greeting = os.environ.get("GREETING", "")
    body = "Hello from Pier!" + (f" {greeting}" if greeting else "") + "\n"
    print(f"hello: {environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '/')}", flush=True)
    data = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
