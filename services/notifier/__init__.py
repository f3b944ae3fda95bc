"""The notifier service: signed webhooks for finished tasks (Standard Webhooks), with retries kept
as due times in Redis."""
