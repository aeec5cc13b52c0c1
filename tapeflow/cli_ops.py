"""``tapeflow control cancel-all | flatten | resume``: stop, unwind and re-arm a running pipeline.

Registered on the ``control`` sub-app by ``register(control_app, send)`` (one line in
``tapeflow/cli.py``); ``send`` is the CLI's one way to deliver a control command, so these commands
go wherever the other control commands go.
"""

from __future__ import annotations

from typing import Callable, Optional

import typer

from schemas import ControlKind
from tapeflow.cli_control import BROKERS_OPTION, PREFIX_OPTION

ACCOUNT_HELP = "An account, or global for every account."
STRATEGY_HELP = "Only this strategy's orders and positions (default: every strategy)."


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def register(control_app: typer.Typer, send: Callable[..., None]) -> None:
    @control_app.command("cancel-all")
    def cancel_all(
        account: str = typer.Option("global", help=ACCOUNT_HELP),
        strategy: str = typer.Option("", help=STRATEGY_HELP),
        brokers: Optional[str] = BROKERS_OPTION,
        prefix: str = PREFIX_OPTION,
    ) -> None:
        """Cancel every working order through the venue (each cancel an execution report)."""
        send(ControlKind.CANCEL_ALL, name=strategy.strip(), target=account,
             detail=f"cancel-all of {strategy.strip() or 'every strategy'} from the CLI", brokers=brokers, prefix=prefix)

    @control_app.command("flatten")
    def flatten(
        account: str = typer.Option("global", help=ACCOUNT_HELP),
        strategy: str = typer.Option("", help=STRATEGY_HELP),
        brokers: Optional[str] = BROKERS_OPTION,
        prefix: str = PREFIX_OPTION,
    ) -> None:
        """Cancel every working order, then close every position with reducing market orders (they
        pass the kill switch and HALTED). The trading state is unchanged: `kill-switch on --flatten`
        also stops new orders."""
        send(ControlKind.FLATTEN, name=strategy.strip(), target=account,
             detail=f"flatten of {strategy.strip() or 'every strategy'} from the CLI", brokers=brokers, prefix=prefix)

    @control_app.command("resume")
    def resume(
        reason: str = typer.Option(..., help="Why trading may resume: lands in the control table and the risk state record."),
        account: str = typer.Option("global", help=ACCOUNT_HELP),
        brokers: Optional[str] = BROKERS_OPTION,
        prefix: str = PREFIX_OPTION,
    ) -> None:
        """Take a tripped breaker or a HALTED account back to ACTIVE, re-armed. Refused by risk (an
        alert `resume_refused` in the control table, the state unchanged) while today's loss is over
        daily_loss_limit: the breaker would trip again at once. The kill switch is separate."""
        if not reason.strip():
            _fail("resume needs a --reason: it is the audit trail of why trading restarted")
        send(ControlKind.RESUME, target=account, detail=reason.strip(), brokers=brokers, prefix=prefix)
        typer.echo("risk refuses it, and the account stays as it is, while today's loss is over daily_loss_limit "
                   "(see alert resume_refused in the control table); the kill switch, if on, stays on")
