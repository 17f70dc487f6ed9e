"""A script that logs."""
import logging

import pybundle

logging.getLogger("script.logs").debug("debug from %s", "a script")
logging.getLogger("script.logs").info("info from a script")
pybundle.reply("ok")
