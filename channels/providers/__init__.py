"""Provider adapters, one module per provider (see channels/base.py and channels/registry.py).

The helpers here are shared by the two AWS providers (ses.py and sns_sms.py).
"""
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from django.conf import settings

from channels.base import DeliveryError, DeliveryOutcomeUnknown

# AWS error codes worth another try later. Other 4xx answers are about the request itself
# (a rejected message, an invalid number) and would fail the same way again.
AWS_TRANSIENT_CODES = frozenset({
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "KMSThrottlingException",
})


def aws_client(service: str):
    """A boto3 client for `service` from the AWS_* settings (AWS_ENDPOINT_URL: local stacks only)."""
    import boto3

    return boto3.session.Session().client(
        service,
        region_name=settings.AWS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL or None,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY or None,
        # No retries inside botocore: Celery retries with backoff, and each try is counted on
        # the Delivery row, so a slow provider never holds a worker for minutes.
        config=Config(connect_timeout=5, read_timeout=15, retries={"total_max_attempts": 1}),
    )


def aws_send_error(exc: Exception) -> DeliveryError | DeliveryOutcomeUnknown:
    """What boto3 raised, as Omni sees it: throttling, 5xx and connection faults are transient;
    a read timeout or a connection closed without an answer leaves the outcome unknown (AWS may
    have accepted the message)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        transient = code in AWS_TRANSIENT_CODES or status == 429 or status >= 500
        return DeliveryError(error.get("Message") or str(exc), code=code, permanent=not transient)
    if isinstance(exc, (NoCredentialsError, ParamValidationError)):
        # Configuration or payload mistakes: the same request would fail again.
        return DeliveryError(str(exc), code=type(exc).__name__, permanent=True)
    if isinstance(exc, ReadTimeoutError):
        return DeliveryOutcomeUnknown(f"No answer from AWS: {exc}")
    if isinstance(exc, ConnectionClosedError):
        # The connection dropped after the request went out: AWS may have accepted it too.
        return DeliveryOutcomeUnknown(f"AWS closed the connection without an answer: {exc}")
    # Connection refused, connect timeouts and other BotoCoreErrors: nothing reached AWS.
    return DeliveryError(str(exc), code=type(exc).__name__, permanent=False)
