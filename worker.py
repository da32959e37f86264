"""`python worker.py`: a Tamma worker process from a checkout (installed: `tamma-worker`).

Scale out by running more of these; SIGTERM stops polling and lets in-flight activities
finish (up to worker.graceful_shutdown_s) before exiting 0.
"""

from tamma.worker_main import run

if __name__ == "__main__":
    run()
