"""The decision log: an interface (log.py), the sealing every backend shares (sealer.py, keys.py),
the SQLite and PostgreSQL backends as siblings (sqlite.py, postgres.py) and `open_log`
(factory.py), the one module that knows them all. Depends only on the decision models."""
