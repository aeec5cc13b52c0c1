"""Dashboard sign-in against the users file (``config.users``) instead of a shared password.

Panel's basic-auth login page and secure cookie, with the password check replaced: the name and
password typed are verified against the salted scrypt hashes of the users file, so the user a
command carries (``pn.state.user``) is the one who proved it. Roles are applied by the operator
desk (``dashboards.operator.OperatorDesk.may_control``).
"""

from __future__ import annotations

import logging

from panel.auth import BasicAuthProvider, BasicLoginHandler

from config.users import UsersFile

log = logging.getLogger("tapeflow.dashboard.auth")


def users_auth_provider(users: UsersFile) -> BasicAuthProvider:
    class UsersLoginHandler(BasicLoginHandler):
        def _validate(self, username: str, password: str) -> bool:
            user = users.verify(username, password)
            # the name is logged, never the password
            log.warning("dashboard sign-in %s for %r", "accepted" if user else "refused", username)
            return user is not None

    class UsersAuthProvider(BasicAuthProvider):
        @property
        def login_handler(self):
            UsersLoginHandler._login_endpoint = self._login_endpoint
            UsersLoginHandler._login_template = self._login_template
            return UsersLoginHandler

    return UsersAuthProvider()
