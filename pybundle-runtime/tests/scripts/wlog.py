"""Worker functions that log, for the logging tests."""
import logging
import threading

log = logging.getLogger("wlog.model")


def work(n):
    log.debug("hidden at INFO")
    log.info("working on %d", n)
    log.warning("careful with %s", "that")
    return n


def fail_logged():
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    return "logged"


def from_a_thread():
    thread = threading.Thread(target=lambda: logging.getLogger("wlog.thread").error("from a thread"))
    thread.start()
    thread.join()
    return "done"
