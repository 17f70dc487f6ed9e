"""Replies with bytes (and sends them as progress), as a worker function may return them."""
import pybundle

data = pybundle.input()
blob = data["blob"] if data else b""
pybundle.send({"head": blob[:4]})
pybundle.reply(
    {
        "blob": blob + b"\x00\xff",
        "made": bytes(range(256)),
        "view": memoryview(b"view"),
        "array": bytearray(b"array"),
        "input_type": type(blob).__name__,
    }
)
