"""Tries to reply with a set, which JSON cannot carry."""
import pybundle

pybundle.reply({"values": {1, 2, 3}})
