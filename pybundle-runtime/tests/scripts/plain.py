"""Run directly by `Environment::command` (no protocol): prints what it was started with."""
import json
import os
import sys

print(
    json.dumps(
        {
            "executable": sys.executable,
            "file": os.path.abspath(__file__),
            "name": __name__,
            "argv": sys.argv[1:],
            "isolated": sys.flags.isolated,
            "conda_prefix": os.environ.get("CONDA_PREFIX"),
            "path_first": os.environ.get("PATH", "").split(os.pathsep)[0],
            "activation": os.environ.get("PYBUNDLE_TEST_ACTIVATION"),
            "pybundle_imported": "pybundle" in sys.modules,
        }
    )
)
