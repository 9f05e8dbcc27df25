"""The signed outbound webhook sender (omni/lib/webhooks.py) against a local receiver."""
import json
import socket
import time

import pytest
from django.core.exceptions import ValidationError

from omni.lib import webhooks
from omni.lib.webhook_addresses import is_public_address
from omni.lib.webhooks import MAX_ANSWER_BYTES, backoff, call, classify, verify_signature
from omni.models import WebhookCall, WebhookEndpoint, WebhookOutcome

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(webhook_receiver):
    return WebhookEndpoint.objects.create(name="CRM", url=f"{webhook_receiver.url}/hooks/omni?source=journey",
                                          timeout_seconds=2)


@pytest.fixture
def public_only(settings):
    """Production's rules: no DEBUG, no private addresses."""
    settings.DEBUG = False
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = False


def test_the_receiver_verifies_the_signature_of_the_body_it_received(endpoint, webhook_receiver):
    call(endpoint, {"contact": "c-1", "amount": 12}, idempotency_key="visit-1", attempt=1)

    [request] = webhook_receiver.requests
    assert request.method == "POST" and request.path == "/hooks/omni" and request.query == {"source": "journey"}
    assert request.headers["Idempotency-Key"] == "visit-1"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"contact": "c-1", "amount": 12}
    assert request.headers["X-Omni-Signature"].startswith("sha256=")
    assert verify_signature(endpoint.secret, request.body, request.headers["X-Omni-Timestamp"],
                            request.headers["X-Omni-Signature"])


def test_a_tampered_body_a_wrong_secret_or_an_old_timestamp_fail_verification(endpoint, webhook_receiver):
    call(endpoint, {"amount": 12}, idempotency_key="visit-1", attempt=1)
    [request] = webhook_receiver.requests
    timestamp, signature = request.headers["X-Omni-Timestamp"], request.headers["X-Omni-Signature"]

    assert not verify_signature(endpoint.secret, request.body.replace(b"12", b"13"), timestamp, signature)
    assert not verify_signature("whsec_another", request.body, timestamp, signature)
    assert not verify_signature(endpoint.secret, request.body, str(int(timestamp) + 1), signature)
    assert not verify_signature(endpoint.secret, request.body, timestamp, signature, now=int(timestamp) + 301)
    assert verify_signature(endpoint.secret, request.body, timestamp, signature, now=int(timestamp) + 299)


def test_a_2xx_answer_succeeds_with_its_json(endpoint, webhook_receiver):
    webhook_receiver.answer_next(201, {"branch": "vip"})

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status, answer.body, answer.error) == (True, False, 201,
                                                                                       {"branch": "vip"}, "")


def test_a_text_answer_comes_back_as_text(endpoint, webhook_receiver):
    webhook_receiver.answer_next(200, raw=b"thanks", content_type="text/plain")

    assert call(endpoint, {}, idempotency_key="visit-1", attempt=1).body == "thanks"


def test_a_500_may_be_retried(endpoint, webhook_receiver):
    webhook_receiver.answer_next(500, {"error": "down"})

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status, answer.error) == (False, True, 500, "HTTP 500")
    assert answer.body == {"error": "down"}


def test_a_404_fails_for_good(endpoint, webhook_receiver):
    webhook_receiver.answer_next(404, {"error": "no such hook"})

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status) == (False, False, 404)


def test_a_redirect_is_not_followed_and_fails_for_good(endpoint, webhook_receiver):
    webhook_receiver.answer_next(302, {})

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status) == (False, False, 302)
    assert len(webhook_receiver.requests) == 1


@pytest.mark.parametrize("status, expected", [
    (200, (True, False)), (204, (True, False)), (408, (False, True)), (429, (False, True)), (500, (False, True)),
    (503, (False, True)), (400, (False, False)), (401, (False, False)), (404, (False, False)), (410, (False, False)),
    (301, (False, False)),
])
def test_statuses_are_classified_ok_retryable_or_permanent(status, expected):
    assert classify(status) == expected


def test_an_answer_of_16_kib_is_read_whole(endpoint, webhook_receiver):
    text = "x" * (MAX_ANSWER_BYTES - 2)
    webhook_receiver.answer_next(200, text)  # JSON-encoded: the quotes make it 16 KiB exactly

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert answer.ok and answer.body == text


def test_a_longer_answer_is_refused_for_good_with_its_start_kept_in_the_log(endpoint, webhook_receiver):
    webhook_receiver.answer_next(200, "x" * (MAX_ANSWER_BYTES - 1))

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status, answer.body) == (False, False, 200, None)
    assert "longer than 16384 bytes" in answer.error
    logged = WebhookCall.objects.get()
    assert logged.outcome == WebhookOutcome.PERMANENT
    assert logged.response_excerpt.startswith('"xxx') and len(logged.response_excerpt) <= WebhookCall.EXCERPT_CHARS


def test_a_refused_connection_may_be_retried(webhook_receiver):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    endpoint = WebhookEndpoint.objects.create(name="Gone", url=f"http://127.0.0.1:{port}/")

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status) == (False, True, None)
    assert "NewConnectionError" in answer.error


def test_a_slow_receiver_times_out_and_may_be_retried(webhook_receiver):
    endpoint = WebhookEndpoint.objects.create(name="Slow", url=webhook_receiver.url, timeout_seconds=1)
    webhook_receiver.answer_next(200, {}, delay=1.5)

    started = time.monotonic()
    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert time.monotonic() - started < 1.4
    assert (answer.ok, answer.retryable, answer.status) == (False, True, None)
    assert "Timeout" in answer.error


def test_the_host_header_keeps_the_urls_host_though_the_checked_address_is_dialled(webhook_receiver):
    port = webhook_receiver.url.rsplit(":", 1)[1]
    endpoint = WebhookEndpoint.objects.create(name="By name", url=f"http://localhost:{port}/")

    assert call(endpoint, {}, idempotency_key="visit-1", attempt=1).ok

    assert webhook_receiver.requests[0].headers["Host"] == f"localhost:{port}"


@pytest.mark.parametrize("url, reason", [
    ("https://10.1.2.3/hook", "non-public address (10.1.2.3)"),
    ("https://192.168.0.9/hook", "non-public address"),
    ("https://127.0.0.1/hook", "non-public address (127.0.0.1)"),
    ("https://169.254.169.254/latest/meta-data", "non-public address (169.254.169.254)"),
    ("https://224.0.0.1/hook", "non-public address"),
    ("https://[::1]/hook", "non-public address (::1)"),
    ("https://[::ffff:127.0.0.1]/hook", "non-public address"),
    ("https://0.0.0.0/hook", "non-public address"),
    ("https://localhost/hook", "localhost resolves to a non-public address"),
    ("http://example.com/hook", "must use https"),
    ("ftp://example.com/hook", "Unsupported URL scheme"),
])
def test_outside_debug_only_https_to_public_addresses_is_called(public_only, url, reason):
    endpoint = WebhookEndpoint.objects.create(name="Inside", url=url)

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status) == (False, False, None)
    assert reason in answer.error
    assert WebhookCall.objects.get().outcome == WebhookOutcome.PERMANENT


def test_private_addresses_are_allowed_in_debug(settings, webhook_receiver):
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = False
    settings.DEBUG = True
    endpoint = WebhookEndpoint.objects.create(name="Local", url=webhook_receiver.url)

    assert call(endpoint, {}, idempotency_key="visit-1", attempt=1).ok


@pytest.mark.parametrize("address, public", [
    ("93.184.215.14", True), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True), ("10.0.0.1", False),
    ("172.16.5.4", False), ("100.64.0.1", False), ("127.0.0.2", False), ("169.254.1.1", False), ("fe80::1", False),
    ("fc00::1", False), ("ff02::1", False), ("240.0.0.1", False), ("::ffff:10.0.0.1", False),
])
def test_public_addresses_are_told_apart(address, public):
    assert is_public_address(address) is public


def test_an_inactive_endpoint_is_not_called(endpoint, webhook_receiver):
    endpoint.active = False
    endpoint.save()

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable) == (False, False)
    assert webhook_receiver.requests == []


def test_every_attempt_writes_one_row_of_the_call_log(endpoint, webhook_receiver):
    webhook_receiver.answer_next(503, {"error": "busy"})
    webhook_receiver.answer_next(200, {"done": True})

    first = call(endpoint, {"n": 1}, idempotency_key="visit-7", attempt=1)
    second = call(endpoint, {"n": 1}, idempotency_key="visit-7", attempt=2)

    rows = list(WebhookCall.objects.order_by("attempt"))
    assert [(r.attempt, r.idempotency_key, r.status_code, r.outcome) for r in rows] == [
        (1, "visit-7", 503, WebhookOutcome.RETRYABLE), (2, "visit-7", 200, WebhookOutcome.OK)]
    assert [r.pk for r in rows] == [first.call_id, second.call_id]
    assert rows[0].response_excerpt == '{"error": "busy"}' and rows[0].error == "HTTP 503"
    assert rows[1].url == endpoint.url and rows[1].duration_ms >= 0
    assert [r.headers["Idempotency-Key"] for r in webhook_receiver.requests] == ["visit-7", "visit-7"]


def test_backoff_doubles_with_jitter_up_to_a_cap():
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (10, 3600), (40, 3600)]:
        waits = [backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1


def test_an_endpoint_with_an_http_url_is_refused_outside_debug_naming_the_field(public_only):
    endpoint = WebhookEndpoint(name="Plain", url="http://example.com/hook")

    with pytest.raises(ValidationError) as refusal:
        endpoint.full_clean()

    assert refusal.value.message_dict == {"url": ["Webhook URLs must use https."]}


def test_each_endpoint_gets_its_own_secret_and_rotation_replaces_it(db):
    first = WebhookEndpoint.objects.create(name="A", url="https://a.example.com/")
    second = WebhookEndpoint.objects.create(name="B", url="https://b.example.com/")
    old = first.secret

    first.rotate_secret()

    assert first.secret.startswith("whsec_") and len(first.secret) > 40
    assert len({old, first.secret, second.secret}) == 3
    first.refresh_from_db()
    assert first.secret != old
    assert webhooks.signature(first.secret, "1", b"{}") != webhooks.signature(old, "1", b"{}")


def test_the_campaigns_webhook_task_is_routed_to_the_outbound_queue_workers_consume():
    from omni.celery import app
    from omni.choices import ALL_QUEUES, OUTBOUND_QUEUE

    route = app.amqp.router.route({}, "campaigns.tasks.call_webhook_task", args=(), kwargs={})

    assert route["queue"].name == OUTBOUND_QUEUE == "outbound"
    assert OUTBOUND_QUEUE in ALL_QUEUES


@pytest.fixture
def tls_receiver(tmp_path):
    """An https receiver on 127.0.0.1 with a self-signed certificate for "localhost": yields
    (url, ca_file, server names the clients asked for)."""
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"host": self.headers["Host"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server_names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda connection, server_name, ctx: server_names.append(server_name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}/hook", str(cert_file), server_names
    server.shutdown()
    server.server_close()


def test_https_dials_the_checked_address_with_the_urls_name_for_sni_and_the_certificate(tls_receiver, settings):
    url, ca_file, server_names = tls_receiver
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = True
    settings.OMNI_WEBHOOKS_CA_BUNDLE = ca_file
    endpoint = WebhookEndpoint.objects.create(name="TLS", url=url)

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert answer.ok, answer.error
    assert answer.body == {"host": url.split("/")[2]}
    assert server_names == ["localhost"]


def test_a_certificate_no_trusted_authority_signed_is_refused(tls_receiver, settings):
    url, _, _ = tls_receiver
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = True
    endpoint = WebhookEndpoint.objects.create(name="TLS", url=url)

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert not answer.ok and "SSLError" in answer.error


def test_production_warns_when_webhooks_may_reach_private_addresses(settings):
    from omni.checks import check_webhook_settings

    settings.PRODUCTION = True
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = False
    assert check_webhook_settings(None) == []

    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = True
    assert [warning.id for warning in check_webhook_settings(None)] == ["omni.W001"]


@pytest.fixture
def unsized_answer(settings):
    """A receiver that answers 200 with 20 KiB and no Content-Length (the body ends when it
    closes the connection): yields its URL."""
    import threading

    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = True
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                               + b"y" * 20480)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    thread.join(timeout=5)
    listener.close()


def test_an_answer_without_a_length_is_refused_once_past_the_bound(unsized_answer):
    endpoint = WebhookEndpoint.objects.create(name="Chatty", url=unsized_answer)

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status, answer.body) == (False, False, 200, None)
    assert "longer than 16384 bytes" in answer.error
