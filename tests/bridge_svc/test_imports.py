"""The bridge process stays small: it never imports the numeric stack."""

from __future__ import annotations

import subprocess
import sys


def test_bridge_does_not_import_pandas_numpy_or_xgboost() -> None:
    code = (
        "import sys, bridge_svc.__main__, bridge_svc.server; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'numpy', 'xgboost'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
