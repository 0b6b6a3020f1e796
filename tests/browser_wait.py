"""Waiting on the page without hanging the test run."""

TIMEOUT_MS = 120_000


def bounded(target, expression: str, arg=None, timeout_ms: int = TIMEOUT_MS):
    """Evaluate a JS function returning a promise in a page or frame, failing after timeout_ms instead of hanging."""
    wrapped = f"""async (arg) => {{
        const work = ({expression})(arg);
        const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), {timeout_ms}));
        return Promise.race([work, timeout]);
    }}"""
    return target.evaluate(wrapped, arg)
