"""Python SDK for the Upscaler API."""

from upscaler_client.client import Client
from upscaler_client.errors import (
    ApiError,
    AuthenticationError,
    ConnectionError,
    InvalidApiKey,
    InvalidRequest,
    InvalidResponse,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    UpscalerError,
)
from upscaler_client.types import ImageInfo, Job, Model, Usage
from upscaler_client.webhooks import WebhookVerificationError, verify_webhook

__version__ = "0.2.0"
__all__ = ["ApiError", "AuthenticationError", "Client", "ConnectionError", "ImageInfo", "InvalidApiKey",
           "InvalidRequest", "InvalidResponse", "Job",
           "JobFailed", "Model", "NotFound", "RateLimited", "ServerError", "Timeout", "UpscalerError",
           "Usage", "WebhookVerificationError", "verify_webhook"]
