"""The alert monitor of a run, from its settings (sinks.alerts holds the rules and the reasons)."""

from __future__ import annotations

from config.settings import Settings
from sinks.alerts import Alert, AlertMonitor, AlertRules
from sinks.webhook import WebhookNotifier


def alert_monitor(settings: Settings, run_id: str) -> AlertMonitor:
    """Alerts always land in the warehouse; they are POSTed too when a webhook is configured."""
    notifier = WebhookNotifier(settings.alert_webhook_url) if settings.alert_webhook_url else None
    return AlertMonitor(run_id, AlertRules(settings.alert_dead_letters_per_minute), notifier)


def watch_feed(feed, monitor: AlertMonitor) -> None:
    """A live feed that reports stream events (the Alpaca feed) raises an alert on each."""
    if hasattr(feed, "on_stream_event"):
        feed.on_stream_event = lambda text: monitor.raise_alert(Alert("alpaca_stream", "warning", text))


def close(monitor: AlertMonitor) -> None:
    if monitor.notifier is not None:
        monitor.notifier.close()
