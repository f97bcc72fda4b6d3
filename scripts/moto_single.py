"""moto's server, answering one request at a time.

moto's own `moto_server` serves each request on a thread without locking, so its conditional
updates are not atomic under concurrency. Served single-threaded, moto cannot race with
itself, and a concurrency test tests our code rather than moto's.
"""
import argparse

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()

run_simple(args.host, args.port, DomainDispatcherApplication(create_backend_app), threaded=False, processes=1, request_handler=MotoRequestHandler)
