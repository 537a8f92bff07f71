"""The SMTP URL setting and how SMTP errors are sorted into transient and permanent."""

from __future__ import annotations

import aiosmtplib
import pytest

from gateway.email.sender import RETRY_DELAYS, retry_delay
from gateway.email.transport import classify
from gateway.settings import SettingsError, load_settings
from gateway.smtp_url import SmtpTarget, parse_smtp_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25)),
        (
            "smtp://user%40x.com:p%40ss@mail.example.com?starttls=true",
            SmtpTarget("mail.example.com", 587, False, True, "user@x.com", "p@ss"),
        ),
        ("smtp://h:2525?starttls=false", SmtpTarget("h", 2525, start_tls=False)),
        ("smtps://u:p@h", SmtpTarget("h", 465, use_tls=True, username="u", password="p")),
    ],
)
def test_smtp_urls(url: str, target: SmtpTarget) -> None:
    assert parse_smtp_url(url) == target


def test_the_password_stays_out_of_logs() -> None:
    assert "secret" not in repr(parse_smtp_url("smtp://u:secret@h"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "must look like smtp://"),
        ("smtp://", "has no host"),
        ("smtp://h?tls=1", "unknown option 'tls'"),
        ("smtp://h?starttls=maybe", "starttls must be true or false"),
        ("smtps://h?starttls=true", "already TLS"),
        ("smtp://h:99999", "port"),
    ],
)
def test_bad_smtp_url_is_one_line_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(smtp_url=url, _env_file=None)
    assert str(error.value).startswith("configuration error: SMTP_URL: ")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_email_from_must_be_an_address() -> None:
    with pytest.raises(SettingsError, match="EMAIL_FROM: must be an email address"):
        load_settings(email_from="Acme", _env_file=None)
    assert load_settings(_env_file=None).smtp_url is None  # unset: capture


@pytest.mark.parametrize(
    ("exc", "transient", "code"),
    [
        (aiosmtplib.SMTPDataError(451, "try later"), True, 451),
        (aiosmtplib.SMTPDataError(554, "spam"), False, 554),
        (aiosmtplib.SMTPSenderRefused(553, "bad sender", "x@y"), False, 553),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "no mailbox", "a@b")]
            ),
            False,
            550,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "a@b")]
            ),
            True,
            452,
        ),
        (aiosmtplib.SMTPAuthenticationError(535, "bad login"), True, None),
        (aiosmtplib.SMTPConnectError("refused"), True, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), True, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), True, None),
        (ConnectionRefusedError(111, "refused"), True, None),
    ],
)
def test_classify(exc: Exception, transient: bool, code: int | None) -> None:
    error = classify(exc)
    assert (error.transient, error.code) == (transient, code)


def test_unknown_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        classify(KeyError("bug"))


def test_retry_schedule_runs_out() -> None:
    assert [retry_delay(n) for n in range(1, len(RETRY_DELAYS) + 2)] == [*RETRY_DELAYS, None]
