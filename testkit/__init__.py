"""Plumbing shared by the tests (tests/) and the benchmarks (bench/): free ports, scratch databases (a SQLite file
or a uniquely named MariaDB database) and the services as real processes.

A top-level package so that both can import it while neither imports the other; it imports only the project's
own packages (common), never tests/ or bench/."""
