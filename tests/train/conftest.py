"""Fixtures of the training tests.

``demo_data`` (the small prepared set of real clips) lives in ``tests/conftest.py``, so that every test
folder shares the one set, prepared once per test session.
"""
