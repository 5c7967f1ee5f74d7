"""What tests that drive whole processes wait for: a state of a folder's run store, never a clock."""
import sqlite3
import time
from pathlib import Path

from initlab.runs import store as st


def statuses(out: Path) -> dict:
    """{status: runs} of the plan in ``out``'s store, read without writing ({} while there is none)."""
    path = Path(out) / st.STORE_NAME
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return dict(db.execute("SELECT status, COUNT(*) FROM runs WHERE position IS NOT NULL "
                                   "GROUP BY status").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return {}


def wait_for(condition, timeout: float) -> bool:
    """Poll ``condition`` every 20 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if condition():
            return True
        time.sleep(0.02)
    return False
