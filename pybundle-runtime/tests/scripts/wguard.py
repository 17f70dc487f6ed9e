"""Worker functions that misuse the pybundle API, for the guardrail tests."""
import asyncio
import threading
import time

import pybundle

_kept = {}


def reply_in_worker():
    pybundle.reply({"not": "allowed"})


def send_from_a_thread():
    errors = []

    def run():
        try:
            pybundle.send("from a bare thread")
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return errors


def send_through_the_handle(n):
    call = pybundle.current_call()
    threads = [threading.Thread(target=call.send, args=({"thread": i},)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _kept["call"] = call
    return call.id


def send_after_the_end():
    try:
        _kept["call"].send("too late")
        return "sent"
    except RuntimeError as exc:
        return str(exc)


def send_from_a_task():
    async def task():
        pybundle.send("from a task")
        return pybundle.current_call() is not None

    return asyncio.run(task())


def watch_cancel_in_a_thread(seconds):
    call = pybundle.current_call()
    seen = []

    def watch():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if call.cancelled():
                seen.append(True)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    _kept["thread_saw_cancel"] = bool(seen)


def thread_saw_cancel():
    return _kept.get("thread_saw_cancel")


def answer_another_call():
    """Tries to answer the call sent just before this one, through the private channel."""
    other = pybundle.current_call().id - 1
    pybundle._active.send(pybundle._protocol.result(other), "forged", True)


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def outside():
    return [pybundle.current_call() is None, pybundle.cancelled()]
