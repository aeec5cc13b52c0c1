"""Alpaca credentials and endpoints (pydantic-settings, Alpaca's own environment names).

The keys come from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` (the names every Alpaca SDK
reads) or a ``.env`` file. Both are :class:`pydantic.SecretStr`: ``repr``, ``str``, logging and
``model_dump`` show ``**********``; the clear value is read only by :meth:`AlpacaSettings.key_pair`
at the moment an alpaca-py client is built. Nothing in tapeflow writes them to the warehouse: feeds
land market messages, the venue lands execution reports, neither carries a credential.

Endpoints default to paper trading and the public market-data stream; every one can be overridden
(``APCA_TRADING_URL``, ``APCA_TRADING_STREAM_URL``, ``APCA_DATA_STREAM_URL``), which is how the
tests point alpaca-py at the fake server on 127.0.0.1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PAPER_TRADING_URL = "https://paper-api.alpaca.markets"
LIVE_TRADING_URL = "https://api.alpaca.markets"
DATA_STREAM_URL = "wss://stream.data.alpaca.markets"

KEY_ID_VAR = "APCA_API_KEY_ID"
SECRET_KEY_VAR = "APCA_API_SECRET_KEY"


class MissingAlpacaKeys(ValueError):
    """One or both API keys are not set; ``missing`` names the environment variables."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__(
            f"Alpaca API keys missing: {', '.join(missing)} not set. Export them (paper keys from "
            "https://app.alpaca.markets/paper/dashboard/overview, 'API Keys') or put them in ./.env, "
            f"e.g. `export {KEY_ID_VAR}=... {SECRET_KEY_VAR}=...`."
        )


class AlpacaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APCA_", env_file=".env", extra="ignore", frozen=True)

    api_key_id: SecretStr | None = Field(None, description=f"{KEY_ID_VAR}")
    api_secret_key: SecretStr | None = Field(None, description=f"{SECRET_KEY_VAR}")
    data_feed: Literal["iex", "sip"] = Field("iex", description="Stock data feed; sip needs a paid plan.")
    trading_url: str | None = Field(None, description="REST base URL (without /v2); default paper or live.")
    trading_stream_url: str | None = Field(None, description="trade_updates websocket; default <trading url>/stream.")
    data_stream_url: str = Field(DATA_STREAM_URL, description="Market-data websocket base (without /v2/iex).")
    request_timeout_s: float = Field(10.0, gt=0, description="Per REST request; past it the order is looked up.")
    requests_per_minute: float = Field(200.0, gt=0, description="Client-side token bucket (Alpaca allows 200/min).")

    @field_validator("trading_url", "trading_stream_url", "data_stream_url")
    @classmethod
    def _no_trailing_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url else url

    # ------------------------------------------------------------------ derived endpoints

    def rest_url(self, paper: bool = True) -> str:
        return self.trading_url or (PAPER_TRADING_URL if paper else LIVE_TRADING_URL)

    def updates_url(self, paper: bool = True) -> str:
        if self.trading_stream_url:
            return self.trading_stream_url
        return "wss://" + self.rest_url(paper).split("://", 1)[1] + "/stream"

    def stock_stream_url(self, feed: str | None = None) -> str:
        return f"{self.data_stream_url}/v2/{feed or self.data_feed}"

    def crypto_stream_url(self) -> str:
        return f"{self.data_stream_url}/v1beta3/crypto/us"

    # ------------------------------------------------------------------ keys

    def missing_keys(self) -> list[str]:
        missing = []
        for name, value in ((KEY_ID_VAR, self.api_key_id), (SECRET_KEY_VAR, self.api_secret_key)):
            if value is None or not value.get_secret_value().strip():
                missing.append(name)
        return missing

    def key_pair(self) -> tuple[str, str]:
        """The clear keys, for building an alpaca-py client only (never log or store the result)."""
        missing = self.missing_keys()
        if missing:
            raise MissingAlpacaKeys(missing)
        assert self.api_key_id is not None and self.api_secret_key is not None
        return self.api_key_id.get_secret_value().strip(), self.api_secret_key.get_secret_value().strip()


def require_keys(settings: AlpacaSettings | None = None) -> AlpacaSettings:
    """Settings with both keys present, or :class:`MissingAlpacaKeys` naming the missing variables.

    ``tapeflow run --feed alpaca`` / ``--venue alpaca`` call this before building anything, so a
    missing key fails at once with the variable's name instead of as an auth error on a socket.
    """
    settings = settings or AlpacaSettings()
    missing = settings.missing_keys()
    if missing:
        raise MissingAlpacaKeys(missing)
    return settings


__all__ = ["AlpacaSettings", "MissingAlpacaKeys", "require_keys", "KEY_ID_VAR", "SECRET_KEY_VAR"]
