"""Local stand-ins for the outside services Omni talks to, for tests (see /conftest.py).

- MotoServer: a moto server (AWS SES and SNS) on 127.0.0.1, reset between tests.
- TwilioServer: an HTTP server in the shape of Twilio's Messages API that records requests
  and can be told to fail the next ones.
- SnsSigner: signs SNS envelopes with its own RSA key and serves its self-signed certificate
  from a local HTTP server, as SNS serves its own from SigningCertURL.
- celery_worker_thread(): a real Celery worker in a thread, on an in-memory broker.
All listen on 127.0.0.1 on a free port and run in daemon threads.
"""
import base64
import datetime
import json
import re
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_string, policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    # Form-encoded bodies, decoded: {name: value} (the last value of a repeated name).
    form: dict = field(default_factory=dict)
    # When it arrived (time.monotonic()).
    at: float = 0.0


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up waiting (timeout tests) closes the socket before the answer.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class RecordingHTTPServer:
    """A threaded local HTTP server that records every request and answers with `respond`.

    `respond(request: RecordedRequest) -> (status, headers, body bytes)`.
    """

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                form = {}
                if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    fields = parse_qs(body.decode(), keep_blank_values=True)
                    form = {name: values[-1] for name, values in fields.items()}
                recorded = RecordedRequest(
                    method=self.command, path=parts.path,
                    query={name: values[-1] for name, values in parse_qs(parts.query).items()},
                    headers=dict(self.headers.items()), body=body, form=form, at=time.monotonic(),
                )
                with server._lock:
                    server.requests.append(recorded)
                status, headers, payload = server.respond(recorded)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format, *args):  # keep test output quiet
                pass

        self._server = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class MotoServer:
    """A moto server (moto.server.ThreadedMotoServer) on 127.0.0.1 and a free port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget every resource and sent message."""
        urlopen(Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10).read()

    def data(self) -> dict:
        """What moto holds: data()["ses"]["Message"], data()["sns"]["SMS"]..."""
        with urlopen(f"{self.url}/moto-api/data.json", timeout=10) as response:
            return json.load(response)

    def sent_emails(self) -> list[dict]:
        return list(self.data().get("ses", {}).get("Message", []))

    def sent_raw_emails(self) -> list[EmailMessage]:
        """Emails sent as MIME (marketing email, with its List-Unsubscribe headers), parsed."""
        return [message_from_string(raw["raw_data"], policy=email_policy.default)
                for raw in self.data().get("ses", {}).get("RawMessage", [])]

    def sent_sms(self) -> list[dict]:
        return list(self.data().get("sns", {}).get("SMS", []))

    def stop(self) -> None:
        self._server.stop()


class TwilioServer:
    """A local server in the shape of Twilio's REST API for messages.

    POST /2010-04-01/Accounts/{sid}/Messages.json answers 201 with a Message resource, unless
    fail_next() queued an error answer (400 with a Twilio code, 429, 500...) or an outage() is
    on (503 until it ends). GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json answers
    with the message as created, at the status set_status() gave it, or 404. GET of
    Messages.json lists the messages created, newest first, filtered as Twilio filters them by
    To, From and DateSent< / DateSent> (inclusive; messages here are "sent" when created).
    Point Omni at it with settings.TWILIO_API_BASE_URL = server.url.
    """

    MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
    MESSAGE_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")

    def __init__(self):
        self._failures: list[tuple[int, dict]] = []
        self._delays: list[float] = []
        self._created: dict[str, dict] = {}
        self._outage_until = 0.0
        self._http = RecordingHTTPServer(self._respond)
        self.url = self._http.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._http.requests

    @property
    def messages(self) -> list[dict]:
        """The form parameters of every message create request received (failed ones too)."""
        return [request.form for request in self.requests if self.MESSAGES_PATH.match(request.path)]

    def fail_next(self, status: int = 400, code: int | None = 21211, message: str = "Invalid 'To' Phone Number",
                  times: int = 1) -> None:
        """Answer the next `times` message requests with this error instead of 201."""
        body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status}
        self._failures.extend([(status, body)] * times)

    def outage(self, seconds: float, status: int = 503) -> None:
        """Answer every message create request with `status` for the next `seconds`, then recover."""
        self._outage_until = time.monotonic() + seconds
        self._outage_status = status

    def delay_next(self, seconds: float) -> None:
        """Accept the next message only after `seconds`, as a slow Twilio would."""
        self._delays.append(seconds)

    def set_status(self, sid: str, status: str, account: str = "AC00000000000000000000000000000001") -> None:
        """Make GET of message `sid` answer with `status` ("delivered", "failed"...), as if
        Twilio had created it, whether or not it went through this server."""
        message = self._created.setdefault(sid, {"sid": sid, "account_sid": account, "to": "", "from": None,
                                                 "body": "", "num_segments": "1", "price": None, "price_unit": "USD",
                                                 "error_code": None, "error_message": None, "direction": "outbound-api",
                                                 "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"})
        message["status"] = status

    def reset(self) -> None:
        self._failures.clear()
        self._delays.clear()
        self._created.clear()
        self._outage_until = 0.0
        self._http.clear()

    def stop(self) -> None:
        self._http.stop()

    def _respond(self, request: RecordedRequest):
        fetched = self.MESSAGE_PATH.match(request.path)
        if request.method == "GET" and fetched and fetched["sid"] in self._created:
            return _json(200, self._created[fetched["sid"]])
        match = self.MESSAGES_PATH.match(request.path)
        if request.method == "GET" and match:
            return _json(200, self._list(request))
        if request.method != "POST" or not match:
            return _json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        if time.monotonic() < self._outage_until:
            return _json(self._outage_status, {"code": None, "message": "Service unavailable",
                                               "status": self._outage_status})
        if self._failures:
            status, body = self._failures.pop(0)
            return _json(status, body)
        if self._delays:
            time.sleep(self._delays.pop(0))
        account, form = match["account"], request.form
        sid = f"SM{uuid.uuid4().hex}"
        body = form.get("Body", "")
        self._created[sid] = message = {
            "sid": sid,
            "account_sid": account,
            "status": "accepted" if form.get("MessagingServiceSid") and not form.get("From") else "queued",
            "to": form.get("To", ""),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body,
            "num_segments": str(max(1, -(-len(body) // 153))) if len(body) > 160 else "1",
            "num_media": "0",
            "direction": "outbound-api",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
            "date_created": format_datetime(datetime.datetime.now(datetime.UTC), usegmt=True),
            "date_updated": format_datetime(datetime.datetime.now(datetime.UTC), usegmt=True),
            "date_sent": format_datetime(datetime.datetime.now(datetime.UTC), usegmt=True),
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        return _json(201, message)

    def _list(self, request: RecordedRequest) -> dict:
        from email.utils import parsedate_to_datetime

        def moment(text):
            return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)

        query = request.query
        after = moment(query["DateSent>"]) if query.get("DateSent>") else None
        before = moment(query["DateSent<"]) if query.get("DateSent<") else None
        found = []
        for message in reversed(list(self._created.values())):
            sent = parsedate_to_datetime(message["date_sent"]) if message.get("date_sent") else None
            if query.get("To") and message["to"] != query["To"]:
                continue
            if query.get("From") and message["from"] != query["From"]:
                continue
            # Twilio's DateSent filters compare whole seconds, both ends included.
            if after and (sent is None or sent.replace(microsecond=0) < after):
                continue
            if before and (sent is None or sent.replace(microsecond=0) > before):
                continue
            found.append(message)
        page_size = int(query.get("PageSize") or 50)
        return {"messages": found[:page_size], "page": 0, "page_size": page_size, "start": 0,
                "end": max(0, min(len(found), page_size) - 1), "first_page_uri": request.path,
                "next_page_uri": None, "previous_page_uri": None, "uri": request.path}


def _json(status: int, body: dict):
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


class SnsSigner:
    """Signs SNS envelopes the way Amazon SNS does, with a local key and certificate.

    The certificate is served at `cert_url`; allow it in tests with
    settings.SNS_CERT_URL_REGEX = signer.cert_url_regex. The same server answers any other GET
    with 200, so SubscribeURLs can point at it (signer.requests shows the visits).
    """

    CERT_PATH = "/SimpleNotificationService-test.pem"

    def __init__(self):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.amazonaws.local")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self._pem = certificate.public_bytes(serialization.Encoding.PEM)
        self._http = RecordingHTTPServer(self._respond)
        self.url = self._http.url
        self.cert_url = f"{self.url}{self.CERT_PATH}"
        self.cert_url_regex = "^" + re.escape(f"{self.url}/")

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._http.requests

    def sign(self, envelope: dict, version: int = 1) -> dict:
        """The envelope with SignatureVersion, SigningCertURL and Signature added."""
        signed_fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        if envelope["Type"] != "Notification":
            signed_fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join(f"{name}\n{envelope[name]}\n" for name in signed_fields if envelope.get(name) is not None)
        digest = hashes.SHA1() if version == 1 else hashes.SHA256()
        signature = self._key.sign(text.encode(), padding.PKCS1v15(), digest)
        return {**envelope, "SignatureVersion": str(version), "SigningCertURL": self.cert_url,
                "Signature": base64.b64encode(signature).decode()}

    def notification(self, message, *, topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ses-events",
                     message_id: str | None = None, subject: str | None = None, version: int = 1,
                     timestamp: str | None = None) -> dict:
        """A signed Notification; `message` (a dict is JSON-encoded) becomes its Message."""
        envelope = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": timestamp or _iso_now(),
            "UnsubscribeURL": f"{self.url}/unsubscribe",
        }
        if subject is not None:
            envelope["Subject"] = subject
        return self.sign(envelope, version)

    def subscription_confirmation(self, *, topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ses-events",
                                  subscribe_url: str | None = None, version: int = 1) -> dict:
        token = uuid.uuid4().hex
        return self.sign({
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic_arn,
            "Message": f"You have chosen to subscribe to the topic {topic_arn}.",
            "SubscribeURL": subscribe_url or f"{self.url}/confirm-subscription?Token={token}",
            "Timestamp": _iso_now(),
        }, version)

    def clear(self) -> None:
        self._http.clear()

    def stop(self) -> None:
        self._http.stop()

    def _respond(self, request: RecordedRequest):
        if request.path == self.CERT_PATH:
            return 200, {"Content-Type": "application/x-pem-file"}, self._pem
        return 200, {"Content-Type": "text/xml"}, b"<ConfirmSubscriptionResponse/>"


def _iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"



@contextmanager
def celery_worker_thread(queues: list[str]):
    """A real Celery worker in a thread of this process.

    It uses settings.CELERY_BROKER_URL when that is Redis or RabbitMQ, else an in-memory
    broker. While it runs, a separate Celery app with Omni's settings is the current and
    default app, so tasks enqueued anywhere in the process go to this worker. Tests using it
    need transactional_db: the worker thread has its own database connection.
    """
    from celery import Celery, _state
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    previous_default = _state.default_app
    previous_current = _state.get_current_app()
    app = Celery("omni-test-worker")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    in_memory = not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "pyamqp://"))
    if in_memory:
        app.conf.update(broker_url="memory://", broker_transport_options={"polling_interval": 0.05})
    app.conf.update(task_always_eager=False, worker_hijack_root_logger=False)
    app.set_default()
    app.set_current()
    # A worker that starts on messages an earlier test left behind would run them here.
    purge_queues()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=queues, shutdown_timeout=15) as worker:
            if in_memory:
                _wait_briefly_for_messages(worker)
            yield worker
    finally:
        purge_queues()
        _state.set_default_app(previous_default)
        previous_current.set_current()


def _wait_briefly_for_messages(worker) -> None:
    """Have the worker's in-memory broker give up waiting for a message after 0.2 s instead of
    Celery's 2 s. The worker checks whether it was asked to stop only between two waits (and
    waits once more after that), so stopping it took 4 s at the end of every test."""
    transport = worker.consumer.connection.transport
    wait = transport.drain_events
    transport.drain_events = lambda connection, timeout=None: wait(connection, timeout=min(timeout or 0.2, 0.2))


@contextmanager
def unreachable_broker():
    """Make every task published in this process go to a broker that refuses connections (a
    closed port), as a broker outage would, until the block ends."""
    import os

    from celery import Celery, _state

    previous_default = _state.default_app
    previous_current = _state.get_current_app()
    # Celery reads the CELERY_BROKER_URL environment variable before its own broker_url
    # setting (CI sets it for the worker tests), so it has to step aside for the outage.
    environment_broker = os.environ.pop("CELERY_BROKER_URL", None)
    app = Celery("omni-unreachable-broker")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url="redis://127.0.0.1:1/8", broker_connection_timeout=0.5, task_always_eager=False)
    app.set_default()
    app.set_current()
    try:
        yield app
    finally:
        if environment_broker is not None:
            os.environ["CELERY_BROKER_URL"] = environment_broker
        _state.set_default_app(previous_default)
        previous_current.set_current()


def run_concurrently(work, times: int = 2, timeout: float = 60) -> tuple[list, list]:
    """Run `work()` in `times` threads released at the same instant; return (results, errors).

    Each thread closes its database connections when done, as a real worker process would.
    """
    import threading

    from django.db import connections

    results, errors = [], []
    start = threading.Barrier(times)

    def run():
        try:
            start.wait()
            results.append(work())
        except Exception as exc:  # surfaced to the test through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results, errors


def purge_queues() -> None:
    """Drop every message waiting on Omni's queues, so no later test's worker picks one up."""
    from celery import current_app

    from omni.choices import ALL_QUEUES

    with current_app.connection_for_write() as connection:
        for queue in ALL_QUEUES:
            channel = connection.channel()
            try:
                channel.queue_purge(queue)
            except connection.channel_errors:
                pass  # RabbitMQ refuses to purge a queue nobody has declared yet: nothing waits there
            finally:
                channel.close()


class FinishedTasks:
    """The tasks a worker finished, in order, with their arguments.

    Tests wait on it instead of polling the database (SQLite's shared in-memory test database
    locks tables between connections).
    """

    def __init__(self):
        import threading

        self.calls: list[tuple[str, tuple]] = []
        self.changed = threading.Condition()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args_of(self, task) -> list[tuple]:
        return [args for name, args in self.calls if name == task.name]

    def record(self, sender=None, args=None, **kwargs):
        with self.changed:
            self.calls.append((sender.name, tuple(args or ())))
            self.changed.notify_all()

    def wait_for(self, task, count: int = 1, timeout: float = 20) -> None:
        """Block until `task` has finished `count` times; fail the test after `timeout` seconds."""
        with self.changed:
            done = self.changed.wait_for(lambda: len(self.args_of(task)) >= count, timeout)
        assert done, f"{task.name} finished {len(self.args_of(task))} of {count} times: {self.names}"

    def wait_for_ids(self, task, ids, timeout: float = 20) -> None:
        """Block until runs of `task` taking a list of ids first (a batch task) have covered every
        id in `ids`: a task left in the broker by an earlier test is not counted."""
        wanted = set(ids)

        def covered():
            return wanted <= {i for args in self.args_of(task) if args for i in args[0]}

        with self.changed:
            done = self.changed.wait_for(covered, timeout)
        assert done, f"{task.name} did not run for all of {sorted(wanted)}: {self.calls}"


class WebhookReceiver:
    """A local receiver for Omni's outbound webhooks (omni/lib/webhooks.py).

    It records every request and answers 200 with {"received": true}, unless answer_next()
    queued other answers. Endpoints pointing at it need settings.OMNI_WEBHOOKS_ALLOW_PRIVATE
    (it listens on http://127.0.0.1).
    """

    def __init__(self):
        self._answers: list[tuple[int, dict, bytes, float]] = []
        self._http = RecordingHTTPServer(self._respond)
        self.url = self._http.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._http.requests

    def answer_next(self, status: int = 200, body=None, *, raw: bytes | None = None, times: int = 1,
                    delay: float = 0.0, content_type: str = "application/json") -> None:
        """Answer the next `times` requests with `status` and `body` (JSON-encoded) or `raw` bytes,
        after `delay` seconds."""
        payload = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self._answers.extend([(status, {"Content-Type": content_type}, payload, delay)] * times)

    def reset(self) -> None:
        self._answers.clear()
        self._http.clear()

    def stop(self) -> None:
        self._http.stop()

    def _respond(self, request: RecordedRequest):
        if not self._answers:
            return _json(200, {"received": True})
        status, headers, payload, delay = self._answers.pop(0)
        if delay:
            time.sleep(delay)
        return status, headers, payload
