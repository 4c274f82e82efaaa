"""Email delivery: Django's SMTP backend, with each failed delivery one log line."""

from django.core.mail.backends import smtp

from kernel.observability import logs_failed_calls


class SmtpBackend(smtp.EmailBackend):
    send_messages = logs_failed_calls("smtp")(smtp.EmailBackend.send_messages)
