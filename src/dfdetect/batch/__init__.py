"""Scale-out: batch scanning and distributed ``prepare`` on Ray.

:mod:`~dfdetect.batch.scan` scans many files with Ray actors that each hold a loaded detector,
:mod:`~dfdetect.batch.prepare` runs ``prepare`` over Ray workers, :mod:`~dfdetect.batch.results` keeps the
resumable results (JSON lines, Parquet shards, summary), :mod:`~dfdetect.batch.cluster` connects to Ray
and runs an actor pool that survives dead workers. Ray is imported only inside functions.
"""
