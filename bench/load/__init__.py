"""The server load test's parts (entry point: bench/load_test.py); each module has one job."""
