"""``make bench``: streamq's benchmark. Starts its own redis-server and the services as real
processes, runs each workload, prints one table and writes ``bench/results/<date>.json``."""
