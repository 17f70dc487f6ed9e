"""The script's logic tested on its own, with the environment's interpreter:

    cargo pybundle python -m unittest discover -s tests      (from examples/hello)
"""

import unittest
from pathlib import Path

from pybundle.testing import run_script

SCRIPT = Path(__file__).resolve().parent.parent / "python" / "hello.py"


class HelloTest(unittest.TestCase):
    def test_greets_by_name(self):
        result = run_script(SCRIPT, input={"name": "unittest"})
        self.assertTrue(result.replied)
        self.assertEqual(result.reply["greeting"], "hello, unittest")

    def test_greets_the_world_without_input(self):
        self.assertEqual(run_script(SCRIPT).reply["greeting"], "hello, world")


if __name__ == "__main__":
    unittest.main()
