"""The api service: submit, list, inspect, retry and cancel tasks over REST."""
