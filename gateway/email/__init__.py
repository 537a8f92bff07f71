"""Email actions of plays: the outbox (row, then job), the `email.send` job with its gate and
retries, the SMTP transport (`aiosmtplib`), and capture when no `SMTP_URL` is set."""
