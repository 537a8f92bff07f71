"""Publishing and validating a playbook warns (never errors) when the opt-out notice would push
its first text into another segment."""

from __future__ import annotations

from starlette.testclient import TestClient

from gateway import accounts

YAML = {"Content-Type": "application/yaml"}
INTRO = "Hi, it's Sam with Acme Lending about the quote you asked for today. "


def _playbook(first: str, second: str = "Thanks!") -> str:
    return (
        "name: Long intro\n"
        "steps:\n"
        "  - id: intro\n"
        "    kind: send\n"
        f'    text: "{first}"\n'
        "  - id: follow_up\n"
        "    kind: send\n"
        "    delay: 1d\n"
        f'    text: "{second}"\n'
    )


def _headers(issued_key: accounts.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued_key.secret}", **YAML}


def _text(length: int) -> str:
    return (INTRO + "x" * length)[:length]


def test_a_150_character_first_text_warns(
    client: TestClient, issued_key: accounts.IssuedKey
) -> None:
    published = client.put(
        "/v1/playbooks/long", content=_playbook(_text(150)), headers=_headers(issued_key)
    )
    assert published.status_code == 201, published.text
    [warning] = [w for w in published.json()["warnings"] if w["code"] == "notice_adds_segment"]
    assert warning["field"] == "steps[0].text"
    assert "becomes 2 GSM-7 segments instead of 1 (173 characters)" in warning["message"]
    checked = client.post(
        "/v1/playbooks/validate", content=_playbook(_text(150)), headers=_headers(issued_key)
    )
    assert checked.json()["valid"] is True
    assert [w["code"] for w in checked.json()["warnings"]] == ["notice_adds_segment"]


def test_boundaries_137_and_138_characters(
    client: TestClient, issued_key: accounts.IssuedKey
) -> None:
    def codes(first: str) -> list[str]:
        body = client.post(
            "/v1/playbooks/validate", content=_playbook(first), headers=_headers(issued_key)
        ).json()
        return [w["code"] for w in body["warnings"]]

    assert codes(_text(137)) == []  # 137 + 23 = 160: still one segment
    assert codes(_text(138)) == ["notice_adds_segment"]  # 161: two


def test_only_first_texts_and_not_when_they_say_stop(
    client: TestClient, issued_key: accounts.IssuedKey
) -> None:
    later_long = _playbook("Hi!", second=_text(150))
    body = client.post("/v1/playbooks/validate", content=later_long, headers=_headers(issued_key))
    assert body.json()["warnings"] == []
    own = _text(140) + " Reply STOP to end"
    body = client.post(
        "/v1/playbooks/validate", content=_playbook(own), headers=_headers(issued_key)
    )
    assert body.json()["warnings"] == []


def test_the_account_notice_is_measured(client: TestClient, issued_key: accounts.IssuedKey) -> None:
    headers = {"Authorization": f"Bearer {issued_key.secret}"}
    notice = " Reply STOP to opt out of messages from Acme Lending."  # 53 characters
    patched = client.patch(
        "/v1/account", json={"compliance": {"opt_out_notice": notice}}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    body = client.post(
        "/v1/playbooks/validate", content=_playbook(_text(137)), headers=_headers(issued_key)
    )
    assert [w["code"] for w in body.json()["warnings"]] == ["notice_adds_segment"]
