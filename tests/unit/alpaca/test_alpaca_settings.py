"""Alpaca settings: keys from the environment or .env, never shown, missing ones named."""

from __future__ import annotations

import logging

import pytest

from config.alpaca_settings import AlpacaSettings, MissingAlpacaKeys, require_keys

SECRET = "s3cr3t-value-that-must-never-appear"
KEY_ID = "PKKEYIDVALUE123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_DATA_FEED", "APCA_TRADING_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo


def test_require_keys_when_both_missing_then_error_names_both_variables():
    with pytest.raises(MissingAlpacaKeys) as info:
        require_keys(AlpacaSettings())
    assert info.value.missing == ["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"]
    assert "APCA_API_KEY_ID, APCA_API_SECRET_KEY not set" in str(info.value)


def test_require_keys_when_secret_blank_then_only_the_secret_is_named(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", "  ")
    with pytest.raises(MissingAlpacaKeys) as info:
        require_keys()
    assert info.value.missing == ["APCA_API_SECRET_KEY"]


def test_keys_when_set_in_environment_then_loaded(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("APCA_DATA_FEED", "sip")
    settings = require_keys()
    assert settings.key_pair() == (KEY_ID, SECRET)
    assert settings.stock_stream_url() == "wss://stream.data.alpaca.markets/v2/sip"


def test_keys_when_in_dotenv_file_then_loaded(tmp_path):
    (tmp_path / ".env").write_text(f"APCA_API_KEY_ID={KEY_ID}\nAPCA_API_SECRET_KEY={SECRET}\n")
    assert require_keys().key_pair() == (KEY_ID, SECRET)


def test_settings_when_printed_dumped_or_logged_then_secret_never_shown(caplog):
    settings = AlpacaSettings(api_key_id=KEY_ID, api_secret_key=SECRET)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("tapeflow.test").info("settings %s %r", settings, settings)
    shown = [repr(settings), str(settings), str(settings.model_dump()), str(settings.model_dump(mode="json")),
             settings.model_dump_json(), caplog.text]
    for text in shown:
        assert SECRET not in text and KEY_ID not in text
    assert "**********" in repr(settings)


def test_default_endpoints_when_paper_then_paper_api_and_its_stream():
    settings = AlpacaSettings(api_key_id=KEY_ID, api_secret_key=SECRET)
    assert settings.rest_url(paper=True) == "https://paper-api.alpaca.markets"
    assert settings.updates_url(paper=True) == "wss://paper-api.alpaca.markets/stream"
    assert settings.updates_url(paper=False) == "wss://api.alpaca.markets/stream"
    assert settings.crypto_stream_url() == "wss://stream.data.alpaca.markets/v1beta3/crypto/us"
