"""The users file: salted scrypt hashes, roles, and an operator desk that only traders may drive."""

from __future__ import annotations

import json
import stat

import pytest

from config.users import UsersFile, UsersFileError
from config.control_channel import ControlChannel
from dashboards.operator import OperatorDesk

PASSWORD = "correct horse battery"


def test_a_user_signs_in_with_their_password_only(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, "trader")
    reopened = UsersFile(tmp_path / "users.json")
    assert reopened.verify("alice", PASSWORD).role == "trader"
    assert reopened.verify("alice", PASSWORD + "!") is None
    assert reopened.verify("mallory", PASSWORD) is None


def test_the_file_holds_salted_hashes_and_no_password_and_only_its_owner_reads_it(tmp_path):
    path = tmp_path / "users.json"
    users = UsersFile(path)
    users.add("alice", PASSWORD, "trader")
    users.add("bob", PASSWORD, "viewer")
    text = path.read_text()
    assert PASSWORD not in text
    entries = json.loads(text)["users"]
    assert entries["alice"]["salt"] != entries["bob"]["salt"]
    assert entries["alice"]["hash"] != entries["bob"]["hash"]  # same password, different salts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replacing_a_user_changes_their_password_and_role(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, "viewer")
    users.add("alice", "another long one", "trader")
    assert users.verify("alice", PASSWORD) is None
    assert users.verify("alice", "another long one").role == "trader"
    users.remove("alice")
    assert not UsersFile(tmp_path / "users.json").configured


@pytest.mark.parametrize("name,password,role,message", [
    ("alice", PASSWORD, "admin", "unknown role 'admin'"),
    ("al ice", PASSWORD, "viewer", "user name"),
    ("alice", "short", "viewer", "at least 8 characters"),
])
def test_bad_users_are_refused_with_the_reason(tmp_path, name, password, role, message):
    with pytest.raises(UsersFileError, match=message):
        UsersFile(tmp_path / "users.json").add(name, password, role)


def test_a_file_that_is_not_a_users_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "users.json"
    path.write_text('{"alice": "plain"}')
    with pytest.raises(UsersFileError, match=str(path)):
        UsersFile(path)


def test_only_traders_send_commands_and_the_command_carries_their_name(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, "trader")
    users.add("bob", PASSWORD, "viewer")
    spool = tmp_path / "control.jsonl"
    desk = OperatorDesk(ControlChannel(spool), "paper", users)
    command = desk.kill_switch(True, "alice")
    assert command.issued_by == "alice"
    for user in ("bob", None, "mallory"):
        with pytest.raises(PermissionError, match="only users with the trader role"):
            desk.set_limit("max_order_notional", 1_000.0, user)
    assert [json.loads(line)["issued_by"] for line in spool.read_text().splitlines()] == ["alice"]


def test_without_users_the_local_operator_may_send_as_today(tmp_path):
    desk = OperatorDesk(ControlChannel(tmp_path / "control.jsonl"), "paper", UsersFile(tmp_path / "none.json"))
    assert desk.may_control(None)
    assert desk.kill_switch(True, None).issued_by
