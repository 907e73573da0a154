"""The gunicorn code the web process copies or relies on is still the code it was copied from.

flexgate_stream.server.gevent_worker copies gunicorn 27.0's ``GeventWorker.run`` and ``handle_request`` and
``AsyncWorker.handle_request``; server.resting ends a resumed stream as ``AsyncWorker.handle`` ends a request;
server.http_edge answers what ``Worker.handle_error`` answers; the worker makes ``util.http_date``'s text once a
second and remembers ``message._ip_in_allow_list``'s answers; fanout.stream_writer writes the chunks gunicorn's
``Response`` writes. docs/architecture.md, "Where the web process departs from gunicorn", says why. When gunicorn
changes one of these, this test names it: re-read the new source, carry its change into our copy (or check that
our writes still match), then record the new hash here.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
from gunicorn import util
from gunicorn.http import message
from gunicorn.http.wsgi import Response
from gunicorn.workers.base import Worker
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

pytestmark = pytest.mark.timeout(30)

# gunicorn function -> (sha256 of its source, first 16 hex digits, as of gunicorn 27.0.1; what to re-check)
COPIED = {
    GeventWorker.run: ("50119854ef8be38c", "StreamingGeventWorker.run (server/gevent_worker.py) is a copy of it"),
    GeventWorker.handle_request: ("46750b15c6e4d4b4", "StreamingGeventWorker.handle_request is a copy of it"),
    AsyncWorker.handle_request: ("913e17a9542aa70d", "StreamingGeventWorker._handle_request is a copy of it"),
    AsyncWorker.handle: ("6eb3b127e6ba7e84", "RestingStream.resume (server/resting.py) ends a stream as it ends a "
                                             "request: the same errors logged, the same ignored"),
    Worker.handle_error: ("75426448389bbac9", "JsonErrorGeventWorker.handle_error (server/http_edge.py) replaces "
                                              "it: the errors it tells apart, CLIENT_ERRORS"),
    Response.write: ("a13659ff072c00e1", "StreamWriter.write and stream_writer.chunk (fanout/stream_writer.py) "
                                         "write the chunks it writes, and count what it counts in ``sent``"),
    Response.close: ("1e78fc7777ff09ae", "StreamWriter.end writes the last chunk it writes"),
    util.http_date: ("c67e491c15bd112c", "dates_once_a_second (server/gevent_worker.py) returns its text for "
                                         "the current second, made once a second"),
    message._ip_in_allow_list: ("f652338a798ddad4", "peers_remembered (server/gevent_worker.py) keeps its answer per "
                                           "address"),
    Response.is_chunked: ("741304718d0b52cf", "web.extension._writes_chunks decides as it does which streams "
                                              "gunicorn sends chunked"),
}


@pytest.mark.parametrize("function", list(COPIED), ids=lambda f: f.__qualname__)
def test_the_copied_gunicorn_code_has_not_changed(function):
    recorded, what = COPIED[function]
    found = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
    assert found == recorded, (
        f"gunicorn's {function.__module__}.{function.__qualname__} changed since it was copied (source hash "
        f"{found}, recorded {recorded}): {what}. Re-read it, carry the change over, then record the new hash.")
